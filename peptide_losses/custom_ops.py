"""The fused losses as PyTorch custom operators, namespace ``peptide_losses``.

Each loss is a pair of operators, ``peptide_losses::<loss>_forward`` (the
per-spectrum rows and what backward needs) and ``<loss>_backward`` (the
gradient of the logits or residue masses), joined by registered autograd, so
``torch.compile(..., fullgraph=True)`` puts them in its graph without a break,
and autocast leaves their inputs alone (no autocast rule is registered: bf16
logits stay bf16, float64 m/z stay float64; the kernels compute in float32).

Which torch API registers them (:data:`OPERATOR_API`):

- ``"triton_op"`` (torch >= 2.6, compiled kernels): ``torch.library.triton_op``;
  Inductor sees the Triton kernels themselves (through ``wrap_triton``, see
  :mod:`peptide_losses.kernels.traceable`) and the fake implementation is the
  launcher itself run on fake tensors.
- ``"custom_op"`` (torch 2.4 / 2.5, or kernels under ``TRITON_INTERPRET=1``,
  which torch cannot trace into): ``torch.library.custom_op``, opaque to the
  compiler, with the given fake implementation.

Outside ``torch.compile`` tracing, :class:`LossOperator` calls the same
launchers through a plain ``torch.autograd.Function`` instead: the custom-op
dispatcher costs about 0.4 ms of host time per call on the H100 machine, more
than both kernels' device time, and eager users should not pay for it.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .backend import interpreter_enabled
from .reference import reduce_spectra

NAMESPACE = "peptide_losses"

OPERATOR_API = "triton_op" if hasattr(torch.library, "triton_op") and not interpreter_enabled() else "custom_op"


def _gradient_fake(x: torch.Tensor, *_) -> torch.Tensor:
    """Shape of every backward operator's result: x's shape and dtype, contiguous."""
    return x.new_empty(x.shape)


def _operator(name: str, implementation: Callable, fake: Callable):
    qualified = f"{NAMESPACE}::{name}"
    if OPERATOR_API == "triton_op":
        return torch.library.triton_op(qualified, implementation, mutates_args=())
    op = torch.library.custom_op(qualified, implementation, mutates_args=())
    op.register_fake(fake)
    return op


def _backward_operator(name: str, launcher: Callable):
    """``<name>_backward(x, masses, mask, grad_loss, grad_mass) -> grad_x`` over a backward launcher."""

    def backward(
        x: torch.Tensor, masses: Optional[torch.Tensor], mask: torch.Tensor, grad_loss: torch.Tensor,
        grad_mass: torch.Tensor,
    ) -> torch.Tensor:
        return launcher(x, masses, mask, grad_loss, grad_mass)

    return _operator(f"{name}_backward", backward, _gradient_fake)


def _eager_function(eager_forward: Callable, backward: Callable) -> type:
    """The same launchers as one autograd.Function (no dispatcher), the reduction inside the forward kernel.

    Backward is one autograd node (on a slow host each node of torch's own
    reduction, sum, div, clamp, unbind, costs more host time than the fused
    kernels take on the device), and it hands the mean's denominator to the
    backward kernel instead of dividing first.
    """

    class EagerLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, options, x, masses, mask, *rest):
            loss, grad_mass, denominator, offsets = eager_forward(options, x, masses, mask, *rest)
            ctx.save_for_backward(x, masses, mask, grad_mass, denominator)
            ctx.n_rest = len(rest)
            ctx.offsets = offsets
            return loss

        @staticmethod
        def backward(ctx, grad):
            nothing = (None,) * (3 + ctx.n_rest)
            if not ctx.needs_input_grad[1]:
                return (None, *nothing)
            x, masses, mask, grad_mass, denominator = ctx.saved_tensors
            # grad is (B,) for reduction "none", else 0-dim: the same weight for every spectrum.
            return (None, backward(x, masses, mask, grad, grad_mass, denominator, **ctx.offsets), *nothing[1:])

    return EagerLoss


def _outputs(output) -> tuple:
    """An operator's outputs as a tuple (a single tensor is a one-tuple)."""
    return output if isinstance(output, tuple) else (output,)


def _save(ctx, inputs: tuple, outputs: tuple, mass_gradient: Callable) -> None:
    """Keep x, masses, mask and the per-spectrum mass gradient for backward."""
    x, masses, mask = inputs[:3]
    ctx.save_for_backward(x, masses, mask, mass_gradient(outputs))


def _gradient(backward: Callable, ctx, grad_loss: torch.Tensor, needs_input_grad: tuple) -> tuple:
    """Gradients of (x, masses, mask, *rest) from the per-spectrum upstream gradient (B,): only x gets one."""
    if not needs_input_grad[0]:
        return (None,) * len(needs_input_grad)
    x, masses, mask, grad_mass = ctx.saved_tensors
    return (backward(x, masses, mask, grad_loss, grad_mass), *(None,) * (len(needs_input_grad) - 1))


class LossOperator:
    """``(options, tensors, flags) -> loss``: while torch.compile traces, the registered operator
    (``.op``, called with ``*tensors, *options.operator_arguments(), *flags``) and torch's
    reduction; otherwise the eager autograd.Function. Both run the same launchers and give the
    same numbers."""

    def __init__(self, op, eager: type, loss_rows: Callable) -> None:
        self.op = op
        self.eager = eager
        self.loss_rows = loss_rows

    def __call__(self, options, tensors: tuple, flags: tuple = ()):
        if torch.compiler.is_compiling():
            outputs = _outputs(self.op(*tensors, *options.operator_arguments(), *flags))
            return reduce_spectra(*self.loss_rows(outputs), options.reduction)[0]
        return self.eager.apply(options, *tensors, *flags)


def register_loss(
    name: str,
    forward: Callable,
    forward_fake: Callable,
    backward: Callable,
    mass_gradient: Callable[[tuple], torch.Tensor],
    loss_rows: Callable[[tuple], tuple[torch.Tensor, torch.Tensor]],
    eager_forward: Callable,
):
    """Register ``<name>_forward`` / ``<name>_backward`` and the autograd joining them.

    Args:
        name: the loss's operator prefix, e.g. ``"precursor_mass_loss"``.
        forward: ``(x, masses, mask, *data, *options) -> outputs``, annotated
            (the annotations are the operator schema). x: logits (B, L, V) with
            masses (V,), or residue masses (B, L) with masses None.
        forward_fake: shapes and dtypes of ``forward``'s outputs from the
            arguments' (no data-dependent shape), for the ``custom_op`` API.
        backward: the backward launcher, ``(x, masses, mask, grad_loss (B,),
            grad_mass, denominator=None, **offsets) -> grad_x`` contiguous in x's shape and
            dtype, the gradient of ``sum_b grad_loss[b] * loss[b] / denominator``.
        mass_gradient: picks grad_mass from ``forward``'s outputs (as a tuple).
        loss_rows: picks (per-spectrum loss (B,), counted flags (B,)) from
            them; the loss must be row 0 of the first output.
        eager_forward: ``(options, x, masses, mask, *data, *flags) -> (loss, grad_mass,
            denominator or None, offsets)`` for the eager path: the reduced loss (``options.reduction``)
            from one launch, the tensors holding what the backward launcher takes (grad_mass and
            the mean's denominator) and the keyword offsets into them it is called with.

    Returns:
        A :class:`LossOperator`; gradients flow to ``x`` only.
    """
    forward_op = _operator(f"{name}_forward", forward, forward_fake)
    backward_op = _backward_operator(name, backward)

    def setup_context(ctx, inputs, output):
        _save(ctx, inputs, _outputs(output), mass_gradient)

    def gradient(ctx, *grads):
        # The per-spectrum loss is row 0 of the first output (both losses' layout).
        return _gradient(backward_op, ctx, grads[0][0], ctx.needs_input_grad)

    forward_op.register_autograd(gradient, setup_context=setup_context)
    return LossOperator(forward_op, _eager_function(eager_forward, backward), loss_rows)
