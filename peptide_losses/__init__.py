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

import importlib.util
import sys
from pathlib import Path


def _map_source_kernels() -> None:
    """Import ``kernels/`` as ``peptide_losses.kernels`` when the install did not map it.

    setup.py maps the top-level ``kernels/`` folder onto ``peptide_losses.kernels``: a wheel and
    a PEP 660 editable install honour that, a legacy ``setup.py develop`` (pip's fallback with
    setuptools < 64 and ``--no-build-isolation``) only puts the checkout on sys.path.
    """
    sibling = Path(__file__).resolve().parent.parent / "kernels"
    if importlib.util.find_spec(f"{__name__}.kernels") is not None or not (sibling / "__init__.py").is_file():
        return
    spec = importlib.util.spec_from_file_location(f"{__name__}.kernels", sibling / "__init__.py",
                                                  submodule_search_locations=[str(sibling)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)


_map_source_kernels()

from . import constants, decoding, recommended, reference  # noqa: E402
from .functional import precursor_mass_loss, precursor_ppm, spectrum_matching_loss  # noqa: E402
from .modules import PrecursorMassLoss, SpectrumMatchingLoss  # noqa: E402
from .scoring import spectrum_scores  # noqa: E402
from .vocabulary import Vocabulary  # noqa: E402

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
