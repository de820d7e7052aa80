"""peptide_losses: fused, mass-aware losses for de novo peptide sequencing.

- :func:`spectrum_matching_loss` / :class:`SpectrumMatchingLoss`: observed
  peaks against the predicted peptide's fragment ions.
- :func:`precursor_mass_loss` / :class:`PrecursorMassLoss`: log-scaled ppm
  error of the predicted precursor m/z.
- :func:`spectrum_scores`: how well finished candidate peptides (B, K, L) explain
  their spectra; :mod:`peptide_losses.decoding` reranks a beam by it.
- :class:`Vocabulary`: tokens and masses shared by losses, data and trainer.
- :mod:`peptide_losses.reference`: the maths in plain PyTorch.
- :mod:`peptide_losses.recommended`: the evidence-based weights of the mass losses.
"""

from . import constants, decoding, recommended, reference
from .functional import precursor_mass_loss, precursor_ppm, spectrum_matching_loss
from .modules import PrecursorMassLoss, SpectrumMatchingLoss
from .scoring import spectrum_scores
from .vocabulary import Vocabulary

__version__ = "0.1.0"

__all__ = [
    "PrecursorMassLoss",
    "SpectrumMatchingLoss",
    "Vocabulary",
    "constants",
    "decoding",
    "precursor_mass_loss",
    "precursor_ppm",
    "recommended",
    "reference",
    "spectrum_matching_loss",
    "spectrum_scores",
]
