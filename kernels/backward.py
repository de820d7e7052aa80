"""The backward kernel of both losses, and :class:`ForwardOutputs`, what their forward launchers return.

Both losses depend on the logits only through the expected residue masses, so
one kernel is their whole backward: it recomputes the softmax and writes
``g_b * grad_mass_bl * p_lv * (m_v - E_l)`` (0 at masked positions) straight in
the logits' dtype; for residue masses, ``g_b * grad_mass_bl`` at unmasked
positions. ``grad_mass`` is d loss_b / d (residue mass) in 1/Da, computed by the
forward kernel: per position for the spectrum loss, per spectrum (the same at
each of its positions) for the precursor loss. ``g_b`` is the upstream
gradient, divided by the mean's denominator for ``reduction="mean"``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from .common import _active_rows, _div, _rows, _softmax_rows, compute_dtype, prediction_args, x_config
from .launch import LeanKernel


class ForwardOutputs(NamedTuple):
    """A forward launch's outputs, by name.

    ``rows`` is the kernel's flat output: rows of B values, the per-spectrum loss
    first and the counted flags last, then, when the launch reduced, the reduced
    loss and the mean's denominator. The properties make views on access (each
    view is an operator call of host time per step); the backward kernel reads
    ``grad_mass`` and the denominator at their offsets instead.
    """

    rows: torch.Tensor
    #: d loss_b / d mass from element ``grad_mass_offset`` on: a (B, L) tensor of its own
    #: (spectrum loss; (0,) without need_grad), or (B,) values inside ``rows`` (precursor loss).
    grad_mass: torch.Tensor
    grad_mass_offset: int
    batch: int
    reduction: str

    @property
    def losses(self) -> torch.Tensor:
        """(B,) per-spectrum loss: 0 where the spectrum does not count, NaN where it has a bad value."""
        return self.rows[:self.batch]

    @property
    def counted(self) -> torch.Tensor:
        """(B,) 1.0 where the spectrum counts in the mean (a spectrum with a bad value counts), else 0.0."""
        end = self._rows_end
        return self.rows[end - self.batch:end]

    @property
    def loss(self) -> torch.Tensor:
        """The loss as ``reduction`` says: the (B,) losses, or the launch's own sum or mean (0-dim)."""
        return self.losses if self.reduction == "none" else self.rows[self._rows_end]

    @property
    def _rows_end(self) -> int:
        """Where the per-spectrum rows end (the reduced loss and the mean's denominator follow)."""
        return self.rows.shape[0] - (0 if self.reduction == "none" else 2)


@triton.jit
def _upstream(grad_loss_ptr, stride_g, denominator_ptr, s, in_bounds, DIVIDE: tl.constexpr, COMPUTE: tl.constexpr):
    """The upstream gradient of each row's spectrum, over the mean's denominator when DIVIDE."""
    g = tl.load(grad_loss_ptr + s.to(tl.int64) * stride_g, mask=in_bounds, other=0.0).to(COMPUTE)
    if DIVIDE:
        g = _div(g, tl.load(denominator_ptr).to(COMPUTE))
    return g


@triton.jit
def _store_logit_gradient(
    x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, grad_ptr,
    local, s, l, in_bounds, active, coef, L, N,
    V: tl.constexpr, ALIGN: tl.constexpr, X_CONTIGUOUS: tl.constexpr, COMPUTE: tl.constexpr,
    SPECTRA: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Write ``coef_r * p_rv * (m_v - E_r)`` (d loss / d logit for coef = d loss / d E_r), 0 at masked rows,
    into the contiguous gradient, in its dtype."""
    p, m, mass, base, offsets, on_row = _softmax_rows(
        x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, local, s, l, active, L, N,
        V, ALIGN, X_CONTIGUOUS, COMPUTE, SPECTRA, BLOCK_W)
    grad = tl.where(active[:, None], coef[:, None] * p * (m - mass[:, None]), 0.0)
    tl.store(grad_ptr + base + offsets, grad.to(grad_ptr.dtype.element_ty), mask=in_bounds[:, None] & on_row)


@triton.jit
def _mass_backward_kernel(
    x_ptr, stride_xb, stride_xl, stride_xv,
    masses_ptr, stride_m,
    mask_ptr, stride_mb, stride_ml,
    grad_loss_ptr, stride_g,
    denominator_ptr, denominator_index,
    grad_mass_ptr, grad_mass_offset,
    grad_ptr,
    B, L, N,
    V: tl.constexpr, ALIGN: tl.constexpr, X_CONTIGUOUS: tl.constexpr, DIVIDE: tl.constexpr,
    PER_POSITION: tl.constexpr, FROM_LOGITS: tl.constexpr, COMPUTE: tl.constexpr,
    SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr,
):
    local, s, l, in_bounds = _rows(B, L, SPECTRA, BLOCK_L)
    active = _active_rows(mask_ptr, stride_mb, stride_ml, s, l, in_bounds)
    if PER_POSITION:
        mass_index = s.to(tl.int64) * L + l
    else:
        mass_index = s
    coef = _upstream(grad_loss_ptr, stride_g, denominator_ptr + denominator_index, s, in_bounds, DIVIDE, COMPUTE)
    coef = tl.where(active, coef * tl.load(grad_mass_ptr + grad_mass_offset + mass_index, mask=in_bounds, other=0.0),
                    0.0)
    if FROM_LOGITS:
        _store_logit_gradient(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, grad_ptr,
                              local, s, l, in_bounds, active, coef, L, N, V, ALIGN, X_CONTIGUOUS, COMPUTE,
                              SPECTRA, BLOCK_W)
    else:
        # The gradient is allocated contiguous.
        tl.store(grad_ptr + s.to(tl.int64) * L + l, coef.to(grad_ptr.dtype.element_ty), mask=in_bounds)


def mass_backward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    grad_loss: torch.Tensor,
    forward: ForwardOutputs,
    *,
    config: dict | None,
    loss: str,
    per_position: bool,
) -> torch.Tensor:
    """Gradient w.r.t. ``x`` of ``sum_b grad_loss[b] / denominator * loss[b]``, contiguous, in x's dtype.

    Args:
        x, masses, mask: logits (B, L, V) with masses (V,) Da, or residue masses
            (B, L) Da with masses None; the (B, L) bool mask.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too), or a 0-dim
            one for every spectrum.
        forward: the forward launch's outputs: its ``grad_mass``, and the mean's denominator
            for ``reduction="mean"`` (else the denominator is 1).
        config: a :func:`~.common.row_config` result, or None for the default.
        loss: the loss's name, for error messages.
        per_position: ``grad_mass`` holds (B, L) values, else (B,), one per spectrum.
    """
    batch, length = x.shape[:2]
    cfg = x_config(x, masses, config, loss)
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if batch:
        divide = forward.reduction == "mean"
        _MASS_BACKWARD[((batch + cfg["SPECTRA"] - 1) // cfg["SPECTRA"],)](
            *prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            # A 0-dim upstream gradient (of a "sum" or "mean") is every spectrum's: stride 0.
            grad_loss, grad_loss.stride(0) if grad_loss.ndim else 0,
            # The mean's denominator is the rows' last element.
            forward.rows if divide else grad_loss, forward.rows.shape[0] - 1 if divide else 0,
            forward.grad_mass, forward.grad_mass_offset, grad,
            batch, length, x.numel(), V=x.shape[2] if masses is not None else 1,
            X_CONTIGUOUS=x.is_contiguous(), DIVIDE=divide, PER_POSITION=per_position,
            FROM_LOGITS=masses is not None, COMPUTE=compute_dtype(x), enable_fp_fusion=False, **cfg,
        )
    return grad


_MASS_BACKWARD = LeanKernel(_mass_backward_kernel)
