"""The training objective: CE + w_spec * spectrum loss + w_prec * precursor loss.

The two mass losses are the package's own :class:`~peptide_losses.SpectrumMatchingLoss`
and :class:`~peptide_losses.PrecursorMassLoss`, built from the run's
:class:`~peptide_losses.Vocabulary`; every batch is checked against that
vocabulary (fingerprint) before a loss is computed.

Which positions the mass losses judge is ``LossesConfig.positions``:

- ``"target"``: the annotated positions (the batch's mask), with the
  distribution renormalised over the residue tokens (padding dropped). The
  losses then judge the predicted residues at the true length, so their
  gradients move residue choices, never the padding decisions that CE makes.
- ``"all"``: all L positions over the whole vocabulary. Padding has mass 0, so
  the predicted length is judged too; but raising the padding probability is
  then the easiest way to make a peptide lighter, which fights CE early on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import PrecursorMassLoss, SpectrumMatchingLoss
from ..spectra import SpectrumBatch
from ..vocabulary import Vocabulary
from .config import LossesConfig

LOSS_NAMES = ("ce", "spectrum", "precursor")
POSITIONS = ("target", "all")


@dataclass
class LossTerms:
    """Scalar losses of one batch: ``ce`` (mean over cycles, the deep-supervision
    term), ``ce_final`` (last cycle), ``spectrum`` (Da, or ppm), ``precursor``
    (log-scaled ppm)."""

    ce: torch.Tensor
    ce_final: torch.Tensor
    spectrum: torch.Tensor
    precursor: torch.Tensor

    def total(self, weights: dict[str, float]) -> torch.Tensor:
        return sum(weights[name] * getattr(self, name) for name in LOSS_NAMES)

    def detached(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("ce", "ce_final", "spectrum", "precursor")}


def check_vocabulary(batch: SpectrumBatch, vocabulary: Vocabulary) -> None:
    """ValueError unless the batch's vocabulary is the losses' vocabulary."""
    if batch.vocabulary.fingerprint != vocabulary.fingerprint:
        raise ValueError(
            f"the batch's vocabulary ({len(batch.vocabulary)} tokens, fingerprint {batch.vocabulary.fingerprint}) "
            f"is not the vocabulary of the losses and model ({len(vocabulary)} tokens, fingerprint "
            f"{vocabulary.fingerprint}): token indices would mean different residues"
        )


class Objective(torch.nn.Module):
    """Computes :class:`LossTerms` from per-cycle logits and a batch.

    Args:
        vocabulary: the run's vocabulary (V tokens, index 0 padding).
        config: options of the two mass losses.
        backend: ``"auto"``, ``"triton"`` or ``"reference"`` for both mass losses.
    """

    def __init__(self, vocabulary: Vocabulary, config: LossesConfig, backend: str = "auto") -> None:
        super().__init__()
        if config.positions not in POSITIONS:
            raise ValueError(f"losses.positions must be one of {POSITIONS}, got {config.positions!r}")
        self.vocabulary = vocabulary
        self.target_positions = config.positions == "target"
        # With "target" the losses see the residue tokens only: logits[..., 1:] and their masses.
        masses = vocabulary.mass_tensor()[1:] if self.target_positions else vocabulary
        spec = config.spectrum
        self.spectrum_loss = SpectrumMatchingLoss(
            masses, ion_types=spec.ion_types, charges=spec.charges, direction=spec.direction,
            distance=spec.distance, distance_scale=spec.distance_scale, intensity_power=spec.intensity_power,
            backend=backend,
        )
        prec = config.precursor
        self.precursor_loss = PrecursorMassLoss(
            masses, scale=prec.scale, isotope_errors=prec.isotope_errors, backend=backend,
        )

    def forward(self, logits: list[torch.Tensor], batch: SpectrumBatch) -> LossTerms:
        """``logits``: per-cycle (B, L, V); ``batch.tokens`` (B, L) are the targets."""
        check_vocabulary(batch, self.vocabulary)
        final = logits[-1]
        if final.shape[-1] != len(self.vocabulary) or final.shape[1] != batch.tokens.shape[1]:
            raise ValueError(
                f"logits {tuple(final.shape)} do not fit the batch: need (B, {batch.tokens.shape[1]}, "
                f"{len(self.vocabulary)}) for L = the batch's max_length and V = len(vocabulary)"
            )
        ces = [F.cross_entropy(lg.transpose(1, 2), batch.tokens) for lg in logits]
        mask = batch.mask if self.target_positions else None
        residues = final[..., 1:] if self.target_positions else final
        spectrum = self.spectrum_loss(residues, batch.mz, batch.intensity, mask=mask, peak_mask=batch.peak_mask)
        precursor = self.precursor_loss(residues, batch.precursor_mz, batch.charge, mask=mask)
        return LossTerms(torch.stack(ces).mean(), ces[-1], spectrum, precursor)


def shares(values: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
    """Each weighted loss's fraction of the weighted total (0 when the total is 0)."""
    weighted = {name: weights[name] * values[name] for name in LOSS_NAMES}
    total = sum(weighted.values())
    return {name: (w / total if total > 0 else 0.0) for name, w in weighted.items()}
