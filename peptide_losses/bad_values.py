"""The values a loss cannot use, per spectrum: what makes its loss NaN.

A spectrum's loss is NaN, on both backends and without a host sync, when a
value it reads is bad:

- position masses: the mass at an unmasked position is not finite (from logits:
  NaN or +inf logits, a row of only -inf logits, or a NaN / inf token mass;
  or a NaN / inf residue mass); a single -inf logit is a zero probability;
- spectrum loss, at real peaks (``peak_mask``; without one, every peak whose
  m/z is not 0): m/z not finite or <= 0, intensity not finite or < 0;
- precursor loss: precursor m/z not finite or <= 0, charge < 1.

Masked positions and padded peaks are never read: they may hold anything.
Values are judged in the loss's compute dtype (float32, or float64), as the
kernels read them. ``check_values=True`` raises on the same rule, naming the
argument (:mod:`peptide_losses.validation`); the reference
(:mod:`peptide_losses.reference`) and the kernels turn it into NaN.

Each function returns (B,) bool flags, True where the spectrum has the bad value.
"""

from __future__ import annotations

import torch


def _not_positive_finite(t: torch.Tensor) -> torch.Tensor:
    """NaN, inf or <= 0."""
    return ~((t > 0) & (t < torch.inf))


def bad_positions(position_masses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A non-finite mass (B, L), in Da, at an unmasked position."""
    return (mask & ~torch.isfinite(position_masses)).any(-1)


def bad_peak_mz(mz: torch.Tensor, peak_mask: torch.Tensor) -> torch.Tensor:
    """A real peak's m/z (B, N), in the compute dtype, is not finite or is <= 0."""
    return (peak_mask & _not_positive_finite(mz)).any(-1)


def bad_intensity(intensity: torch.Tensor, peak_mask: torch.Tensor) -> torch.Tensor:
    """A real peak's intensity (B, N), in the compute dtype, is not finite or is < 0."""
    return (peak_mask & ~((intensity >= 0) & (intensity < torch.inf))).any(-1)


def bad_precursor_mz(precursor_mz: torch.Tensor) -> torch.Tensor:
    """The precursor m/z (B,), in the compute dtype, is not finite or is <= 0."""
    return _not_positive_finite(precursor_mz)


def bad_charge(charge: torch.Tensor) -> torch.Tensor:
    """The integer precursor charge (B,) is < 1."""
    return charge < 1
