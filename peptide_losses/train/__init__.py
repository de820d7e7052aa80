"""A slim de novo trainer that shows the mass losses at work.

``python -m peptide_losses.train`` trains a small non-autoregressive
tiny-recursive model (:mod:`.model`) on simulated spectra of real tryptic
peptides (:mod:`.simulate`) or on an annotated MGF, with
CE + w_spec * spectrum loss + w_prec * precursor loss (:mod:`.objective`)
under a staged schedule (:mod:`.schedule`), and logs the metrics de novo
people watch (:mod:`.metrics`). Settings: ``default_config.json`` (:mod:`.config`).
"""

from .config import TrainConfig, load_config
from .diagnose import diagnose
from .trainer import evaluate, train

__all__ = ["TrainConfig", "diagnose", "evaluate", "load_config", "train"]
