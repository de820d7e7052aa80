"""The fused spectrum matching loss as a ``torch.autograd.Function`` over the Triton kernels.

Forward keeps only d loss_b / d m_l, shape (B, L), for backward, which
recomputes the softmax from the logits. The reduction is plain torch on the
device (no host sync), shared with the reference.
"""

from __future__ import annotations

import torch

from .kernels.spectrum import spectrum_backward, spectrum_forward
from .reference import _reduce


class _SpectrumLossRows(torch.autograd.Function):
    """(loss (B,), counted (B,)) from logits + masses or residue masses (masses None)."""

    @staticmethod
    def forward(ctx, x, masses, mask, mz, intensity, peak_mask, options):
        need_grad = ctx.needs_input_grad[0]
        rows, grad_mass = spectrum_forward(x, masses, mask, mz, intensity, peak_mask, need_grad=need_grad, **options)
        loss, counted = rows.unbind(0)
        ctx.save_for_backward(x, masses, mask, grad_mass)
        ctx.mark_non_differentiable(counted)
        return loss, counted

    @staticmethod
    def backward(ctx, grad_loss, _grad_counted):
        x, masses, mask, grad_mass = ctx.saved_tensors
        grad_x = spectrum_backward(x, masses, mask, grad_loss, grad_mass) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None, None, None


def spectrum_matching_loss_fused(
    logits: torch.Tensor | None,
    masses: torch.Tensor | None,
    residue_masses: torch.Tensor | None,
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    *,
    ion_types: tuple[str, ...],
    charges: tuple[int, ...],
    direction: str,
    distance: str,
    distance_scale: float | None,
    intensity_power: float,
    reduction: str,
) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.spectrum_matching_loss` (validated inputs).

    Args:
        logits: (B, L, V) float with ``masses`` (V,) Da, or None with
            ``residue_masses`` (B, L) Da. Gradients flow to these only.
        mask: (B, L) bool. mz: (B, N) observed m/z. intensity: (B, N) >= 0.
        peak_mask: (B, N) bool.
        ion_types, charges, direction, distance, distance_scale,
        intensity_power, reduction: as the reference.

    Returns:
        Da or ppm, float32 (float64 for float64 input): scalar for ``"mean"`` /
        ``"sum"``, (B,) for ``"none"``.
    """
    options = dict(ion_types=ion_types, charges=charges, direction=direction, distance=distance,
                   distance_scale=distance_scale, intensity_power=intensity_power)
    x = logits if logits is not None else residue_masses
    loss, counted = _SpectrumLossRows.apply(x, masses if logits is not None else None, mask, mz, intensity,
                                            peak_mask, options)
    return _reduce(loss, counted, reduction)
