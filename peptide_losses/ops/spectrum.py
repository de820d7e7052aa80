"""The fused spectrum matching loss: :class:`SpectrumMatchingLossFunction` and its operators.

Eager: :func:`spectrum_matching_loss_fused` -> :class:`SpectrumMatchingLossFunction`
-> :func:`~peptide_losses.kernels.spectrum.spectrum_forward`, which reduces over
spectra in the same launch. Under torch.compile: the operators
``peptide_losses::spectrum_matching_loss_forward`` / ``_backward`` over the same
launcher, the reduction in the reference's torch ops (no host sync either way).
Forward keeps only d loss_b / d m_l, shape (B, L), for backward, which
recomputes the softmax from the logits. How the operators are registered:
:mod:`peptide_losses.kernels.launch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

import torch

from ..kernels.launch import gradient_fake, operator
from ..kernels.spectrum import spectrum_backward, spectrum_forward, spectrum_outputs
from ..reference import compute_dtype, reduce_spectra

if TYPE_CHECKING:
    from ..options import SpectrumOptions


class SpectrumMatchingLossFunction(torch.autograd.Function):
    """The eager path: one forward launch that also reduces, one backward launch (one autograd node:
    on a slow host each node of torch's own reduction costs more host time than the kernels take on
    the device, and the mean's denominator goes to the backward kernel instead of a division)."""

    @staticmethod
    def forward(ctx, options: SpectrumOptions, x, masses, mask, mz, intensity, peak_mask, need_grad: bool):
        out = spectrum_forward(x, masses, mask, mz, intensity, peak_mask, **options.loss_options(),
                               need_grad=need_grad, reduction=options.reduction)
        ctx.save_for_backward(x, masses, mask, out.rows, out.grad_mass)
        ctx.reduction = options.reduction
        return out.loss

    @staticmethod
    def backward(ctx, grad_loss):
        if not ctx.needs_input_grad[1]:
            return (None,) * 8
        x, masses, mask, rows, grad_mass = ctx.saved_tensors
        # grad_loss is (B,) for reduction "none", else 0-dim: the same weight for every spectrum.
        forward = spectrum_outputs(rows, grad_mass, x.shape[0], ctx.reduction)
        return None, spectrum_backward(x, masses, mask, grad_loss, forward), *(None,) * 6


def _forward_fake(x, masses, mask, mz, intensity, peak_mask, ion_types, charges, direction, distance,
                  distance_scale, intensity_power, need_grad):
    batch, length = x.shape[:2]
    dtype = compute_dtype(x)
    return x.new_empty((2 * batch,), dtype=dtype), x.new_empty((batch, length) if need_grad else (0,), dtype=dtype)


@operator("spectrum_matching_loss_forward", _forward_fake)
def forward_operator(
    x: torch.Tensor,
    masses: Optional[torch.Tensor],
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    ion_types: str,
    charges: List[int],
    direction: str,
    distance: str,
    distance_scale: Optional[float],
    intensity_power: float,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The compiled path's forward: :func:`~peptide_losses.kernels.spectrum.spectrum_forward`'s rows
    (losses, counted) and grad_mass. ion_types is one string of one-letter types ("by")."""
    out = spectrum_forward(x, masses, mask, mz, intensity, peak_mask, ion_types=tuple(ion_types),
                           charges=tuple(charges), direction=direction, distance=distance,
                           distance_scale=distance_scale, intensity_power=intensity_power, need_grad=need_grad)
    return out.rows, out.grad_mass


@operator("spectrum_matching_loss_backward", gradient_fake)
def backward_operator(x: torch.Tensor, masses: Optional[torch.Tensor], mask: torch.Tensor, grad_losses: torch.Tensor,
                      rows: torch.Tensor, grad_mass: torch.Tensor) -> torch.Tensor:
    """The compiled path's backward: the gradient of x from the (B,) upstream gradient of the losses."""
    return spectrum_backward(x, masses, mask, grad_losses, spectrum_outputs(rows, grad_mass, x.shape[0], "none"))


def _save(ctx, inputs, output) -> None:
    x, masses, mask = inputs[:3]
    ctx.save_for_backward(x, masses, mask, *output)


def _operator_backward(ctx, grad_rows, _grad_grad_mass):
    nothing = (None,) * 12
    if not ctx.needs_input_grad[0]:
        return (None, *nothing)
    x, masses, mask, rows, grad_mass = ctx.saved_tensors
    # The gradient of the rows has their layout: its losses part is the (B,) upstream gradient.
    grad_losses = spectrum_outputs(grad_rows, grad_mass, x.shape[0], "none").losses
    return (backward_operator(x, masses, mask, grad_losses, rows, grad_mass), *nothing)


forward_operator.register_autograd(_operator_backward, setup_context=_save)


def spectrum_matching_loss_fused(x, masses, mask, mz, intensity, peak_mask, options: SpectrumOptions) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.spectrum_matching_loss` (validated inputs).

    Args:
        x, masses: logits (B, L, V) with masses (V,) Da, or residue masses (B, L) Da with
            masses None. Gradients flow to ``x`` only.
        mask: (B, L) bool. mz: (B, N) observed m/z. intensity: (B, N) >= 0.
        peak_mask: (B, N) bool.
        options: checked options (:func:`peptide_losses.options.spectrum_options`).

    Returns:
        Da or ppm, float32 (float64 for float64 input): scalar for ``"mean"`` /
        ``"sum"``, (B,) for ``"none"``.
    """
    need_grad = torch.is_grad_enabled() and x.requires_grad
    if torch.compiler.is_compiling():
        rows, grad_mass = forward_operator(x, masses, mask, mz, intensity, peak_mask, *options.operator_arguments(),
                                           need_grad)
        out = spectrum_outputs(rows, grad_mass, x.shape[0], "none")
        return reduce_spectra(out.losses, out.counted, options.reduction)[0]
    return SpectrumMatchingLossFunction.apply(options, x, masses, mask, mz, intensity, peak_mask, need_grad)
