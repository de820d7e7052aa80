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


def _eager_function(forward: Callable, backward: Callable, mass_gradient: Callable) -> type:
    """The same forward/backward pair as an autograd.Function (no dispatcher)."""

    class EagerLoss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, masses, mask, *rest):
            output = forward(x, masses, mask, *rest)
            _save(ctx, (x, masses, mask), output, mass_gradient)
            return output

        @staticmethod
        def backward(ctx, *grads):
            return _gradient(backward, ctx, grads)

    return EagerLoss


def _save(ctx, inputs: tuple, output, mass_gradient: Callable) -> None:
    """Keep x, masses, mask and the per-spectrum mass gradient for backward."""
    x, masses, mask = inputs[:3]
    ctx.save_for_backward(x, masses, mask, mass_gradient(output if isinstance(output, tuple) else (output,)))


def _gradient(backward: Callable, ctx, grads: tuple) -> tuple:
    """Gradients of (x, masses, mask, *rest): only x gets one."""
    x, masses, mask, grad_mass = ctx.saved_tensors
    grad_x = backward(x, masses, mask, grads[0][0], grad_mass) if ctx.needs_input_grad[0] else None
    return (grad_x, *(None,) * (len(ctx.needs_input_grad) - 1))


class LossOperator:
    """Calls the registered operator (``.op``) while torch.compile traces, the
    eager autograd.Function otherwise; both run the same launchers."""

    def __init__(self, op, eager: type) -> None:
        self.op = op
        self.eager = eager

    def __call__(self, *args):
        if torch.compiler.is_compiling():
            return self.op(*args)
        return self.eager.apply(*args)


def register_loss(
    name: str,
    forward: Callable,
    forward_fake: Callable,
    backward: Callable,
    mass_gradient: Callable[[tuple], torch.Tensor],
):
    """Register ``<name>_forward`` / ``<name>_backward`` and the autograd joining them.

    Args:
        name: the loss's operator prefix, e.g. ``"precursor_mass_loss"``.
        forward: ``(x, masses, mask, *data, *options) -> outputs``, annotated
            (the annotations are the operator schema). x: logits (B, L, V) with
            masses (V,), or residue masses (B, L) with masses None. Its first
            output holds the per-spectrum loss (B,) in row 0.
        forward_fake: shapes and dtypes of ``forward``'s outputs from the
            arguments' (no data-dependent shape), for the ``custom_op`` API.
        backward: the backward launcher, ``(x, masses, mask, grad_loss (B,),
            grad_mass) -> grad_x`` contiguous in x's shape and dtype.
        mass_gradient: picks grad_mass from ``forward``'s outputs.

    Returns:
        A :class:`LossOperator` over the forward operator; gradients flow to ``x`` only.
    """
    forward_op = _operator(f"{name}_forward", forward, forward_fake)
    backward_op = _backward_operator(name, backward)

    def setup_context(ctx, inputs, output):
        _save(ctx, inputs, output, mass_gradient)

    def gradient(ctx, *grads):
        return _gradient(backward_op, ctx, grads)

    forward_op.register_autograd(gradient, setup_context=setup_context)
    return LossOperator(forward_op, _eager_function(forward, backward, mass_gradient))
