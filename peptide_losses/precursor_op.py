"""The fused precursor mass loss as a ``torch.autograd.Function`` over the Triton kernels.

Forward keeps only per-spectrum scalars (dloss/dM, shape (B,)) for backward,
which recomputes the softmax from the logits. The reduction is plain torch on
the device (no host sync), shared with the reference.
"""

from __future__ import annotations

import torch

from .kernels.precursor import precursor_backward, precursor_forward
from .reference import _reduce


class _PrecursorLossRows(torch.autograd.Function):
    """(loss (B,), counted (B,)) from logits + masses or residue masses (masses None)."""

    @staticmethod
    def forward(ctx, x, masses, mask, precursor_mz, charge, scale, isotope_errors):
        loss, dloss_dmass, counted = precursor_forward(
            x, masses, mask, precursor_mz, charge, scale=scale, isotope_errors=isotope_errors
        ).unbind(0)
        ctx.save_for_backward(x, masses, mask, dloss_dmass)
        ctx.mark_non_differentiable(counted)
        return loss, counted

    @staticmethod
    def backward(ctx, grad_loss, _grad_counted):
        x, masses, mask, dloss_dmass = ctx.saved_tensors
        grad_x = precursor_backward(x, masses, mask, grad_loss, dloss_dmass) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None, None, None


def precursor_mass_loss_fused(
    logits: torch.Tensor | None,
    masses: torch.Tensor | None,
    residue_masses: torch.Tensor | None,
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    scale: float,
    isotope_errors: tuple[int, ...],
    reduction: str,
) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.precursor_mass_loss` (validated inputs).

    Args:
        logits: (B, L, V) float with ``masses`` (V,) Da, or None with
            ``residue_masses`` (B, L) Da. Gradients flow to these only.
        mask: (B, L) bool. precursor_mz: (B,) observed m/z. charge: (B,) integer.
        scale, isotope_errors, reduction: as the reference.

    Returns:
        Log-scaled ppm, float32 (float64 for float64 input): scalar for
        ``"mean"`` / ``"sum"``, (B,) for ``"none"``.
    """
    if logits is not None:
        loss, counted = _PrecursorLossRows.apply(logits, masses, mask, precursor_mz, charge, scale, isotope_errors)
    else:
        loss, counted = _PrecursorLossRows.apply(residue_masses, None, mask, precursor_mz, charge, scale, isotope_errors)
    return _reduce(loss, counted, reduction)
