"""The fused precursor mass loss: :class:`PrecursorMassLossFunction` and its operators.

Eager: :func:`precursor_mass_loss_fused` -> :class:`PrecursorMassLossFunction`
-> :func:`~peptide_losses.kernels.precursor.precursor_forward`, which reduces
over spectra in the same launch. Under torch.compile: the operators
``peptide_losses::precursor_mass_loss_forward`` / ``_backward`` over the same
launcher, the reduction in the reference's torch ops (no host sync either way).
Forward keeps only per-spectrum numbers for backward (its rows, of which
backward reads grad_mass and the mean's denominator); backward recomputes the
softmax from the logits. How the operators are registered: :mod:`peptide_losses.kernels.launch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

import torch

from ..kernels.launch import gradient_fake, operator
from ..kernels.precursor import precursor_backward, precursor_forward, precursor_outputs
from ..reference import compute_dtype, reduce_spectra

if TYPE_CHECKING:
    from ..options import PrecursorOptions


class PrecursorMassLossFunction(torch.autograd.Function):
    """The eager path: one forward launch that also reduces, one backward launch (one autograd node,
    as :class:`~peptide_losses.ops.spectrum.SpectrumMatchingLossFunction`)."""

    @staticmethod
    def forward(ctx, options: PrecursorOptions, x, masses, mask, precursor_mz, charge):
        out = precursor_forward(x, masses, mask, precursor_mz, charge, **options.loss_options(),
                                reduction=options.reduction)
        ctx.save_for_backward(x, masses, mask, out.rows)
        ctx.reduction = options.reduction
        return out.loss

    @staticmethod
    def backward(ctx, grad_loss):
        if not ctx.needs_input_grad[1]:
            return (None,) * 6
        x, masses, mask, rows = ctx.saved_tensors
        # grad_loss is (B,) for reduction "none", else 0-dim: the same weight for every spectrum.
        forward = precursor_outputs(rows, x.shape[0], ctx.reduction)
        return None, precursor_backward(x, masses, mask, grad_loss, forward), *(None,) * 4


def _forward_fake(x, masses, mask, precursor_mz, charge, scale, isotope_errors):
    return x.new_empty((3 * x.shape[0],), dtype=compute_dtype(x))


@operator("precursor_mass_loss_forward", _forward_fake)
def forward_operator(
    x: torch.Tensor,
    masses: Optional[torch.Tensor],
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    scale: float,
    isotope_errors: List[int],
) -> torch.Tensor:
    """The compiled path's forward: :func:`~peptide_losses.kernels.precursor.precursor_forward`'s rows
    (losses, grad_mass, counted)."""
    return precursor_forward(x, masses, mask, precursor_mz, charge, scale=scale,
                             isotope_errors=tuple(isotope_errors)).rows


@operator("precursor_mass_loss_backward", gradient_fake)
def backward_operator(x: torch.Tensor, masses: Optional[torch.Tensor], mask: torch.Tensor, grad_losses: torch.Tensor,
                      rows: torch.Tensor) -> torch.Tensor:
    """The compiled path's backward: the gradient of x from the (B,) upstream gradient of the losses."""
    return precursor_backward(x, masses, mask, grad_losses, precursor_outputs(rows, x.shape[0], "none"))


def _save(ctx, inputs, output) -> None:
    x, masses, mask = inputs[:3]
    ctx.save_for_backward(x, masses, mask, output)


def _operator_backward(ctx, grad_rows):
    nothing = (None,) * 6
    if not ctx.needs_input_grad[0]:
        return (None, *nothing)
    x, masses, mask, rows = ctx.saved_tensors
    # The gradient of the rows has their layout: its losses part is the (B,) upstream gradient.
    grad_losses = precursor_outputs(grad_rows, x.shape[0], "none").losses
    return (backward_operator(x, masses, mask, grad_losses, rows), *nothing)


forward_operator.register_autograd(_operator_backward, setup_context=_save)


def precursor_mass_loss_fused(x, masses, mask, precursor_mz, charge, options: PrecursorOptions) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.precursor_mass_loss` (validated inputs).

    Args:
        x, masses: logits (B, L, V) with masses (V,) Da, or residue masses (B, L) Da with
            masses None. Gradients flow to ``x`` only.
        mask: (B, L) bool. precursor_mz: (B,) observed m/z. charge: (B,) integer.
        options: checked options (:func:`peptide_losses.options.precursor_options`).

    Returns:
        Log-scaled ppm, float32 (float64 for float64 input): scalar for
        ``"mean"`` / ``"sum"``, (B,) for ``"none"``.
    """
    if torch.compiler.is_compiling():
        rows = forward_operator(x, masses, mask, precursor_mz, charge, *options.operator_arguments())
        out = precursor_outputs(rows, x.shape[0], "none")
        return reduce_spectra(out.losses, out.counted, options.reduction)[0]
    return PrecursorMassLossFunction.apply(options, x, masses, mask, precursor_mz, charge)
