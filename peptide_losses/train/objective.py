"""The training objective: CE + w_spec * spectrum loss + w_prec * precursor loss.

The two mass losses are the package's own :class:`~peptide_losses.SpectrumMatchingLoss`
and :class:`~peptide_losses.PrecursorMassLoss`, built from the run's
:class:`~peptide_losses.Vocabulary`; every batch is checked against that
vocabulary (fingerprint) before a loss is computed.

For an autoregressive model (teacher-forced logits, position l predicting
token l, N->C) CE covers the residues and the stop token (padding right after
the peptide) and ignores the positions after it; for the non-autoregressive
model it covers all L positions, padding included (that is how it predicts the
length). The mass losses run with ``check_values=False``: a value check reads
the device on the host, and the trainer's own data needs none.

How the schedule's weights act is ``LossesConfig.weighting``:

- ``"value"``: ``total = w_ce * CE + w_spec * spectrum + w_prec * precursor``.
  A mass loss of a few hundred (the precursor loss of an untrained model) then
  outweighs a CE near 1 whatever its weight's intent.
- ``"gradient"``: each mass loss is rescaled, batch by batch, so that its
  gradient at the final logits has ``w`` times the norm of CE's (final cycle)
  there: ``w`` is the share of the push on the logits, independent of the
  loss's scale. The rescaling factor is detached (a constant of the step).

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

    def detached(self) -> dict[str, float]:
        """The values as Python floats (reads the device: not for every step)."""
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
        autoregressive: the logits are teacher-forced next-token predictions
            (CE stops at the stop token) rather than whole-sequence predictions.
    """

    def __init__(self, vocabulary: Vocabulary, config: LossesConfig, backend: str = "auto",
                 autoregressive: bool = False) -> None:
        super().__init__()
        self.autoregressive = autoregressive
        self.weighting = config.weighting
        # Every token's mass on the model's device, for metrics without a host-to-device copy per step.
        self.register_buffer("token_masses", vocabulary.mass_tensor(), persistent=False)
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
            backend=backend, check_values=False,
        )
        prec = config.precursor
        self.precursor_loss = PrecursorMassLoss(
            masses, scale=prec.scale, isotope_errors=prec.isotope_errors, backend=backend, check_values=False,
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
        ces = [F.cross_entropy(lg.transpose(1, 2).float(), self.ce_targets(batch)) for lg in logits]
        mask = batch.mask if self.target_positions else None
        residues = final[..., 1:] if self.target_positions else final
        spectrum = self.spectrum_loss(residues, batch.mz, batch.intensity, mask=mask, peak_mask=batch.peak_mask)
        precursor = self.precursor_loss(residues, batch.precursor_mz, batch.charge, mask=mask)
        return LossTerms(torch.stack(ces).mean(), ces[-1], spectrum, precursor)

    def weighted_total(self, terms: LossTerms, weights: dict[str, float],
                       final_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise, and the (2,) factors applied to the spectrum and precursor losses.

        With ``"value"`` weighting the factors are the weights; with
        ``"gradient"`` they are ``w * |dCE/dlogits| / |dloss/dlogits|``.
        A mass loss of weight 0 is left out (factor 0).
        """
        total = weights["ce"] * terms.ce
        factors = []
        reference = None
        for name in ("spectrum", "precursor"):
            loss, weight = getattr(terms, name), weights[name]
            if weight == 0:
                factors.append(torch.zeros((), device=final_logits.device))
                continue
            if self.weighting == "gradient":
                if reference is None:
                    reference = torch.autograd.grad(terms.ce_final, final_logits, retain_graph=True)[0].float().norm()
                own = torch.autograd.grad(loss, final_logits, retain_graph=True)[0].float().norm()
                factor = (weight * reference / own.clamp_min(torch.finfo(torch.float32).tiny)).detach()
            else:
                # torch.full, not torch.tensor: no host-to-device copy inside a step.
                factor = torch.full((), float(weight), device=final_logits.device)
            total = total + factor * loss
            factors.append(factor)
        return total, torch.stack(factors)

    def ce_targets(self, batch: SpectrumBatch) -> torch.Tensor:
        """(B, L) CE targets: the tokens, with positions after the stop token ignored (-100)
        for an autoregressive model."""
        if not self.autoregressive:
            return batch.tokens
        length = batch.mask.sum(1, keepdim=True)
        after_stop = torch.arange(batch.tokens.shape[1], device=batch.tokens.device)[None] > length
        return batch.tokens.masked_fill(after_stop, -100)


def shares(values: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
    """Each weighted loss's fraction of the weighted total (0 when the total is 0)."""
    weighted = {name: weights[name] * values[name] for name in LOSS_NAMES}
    total = sum(weighted.values())
    return {name: (w / total if total > 0 else 0.0) for name, w in weighted.items()}
