"""Triton kernels of the precursor mass loss, forward and backward, and their launchers.

The maths is :func:`peptide_losses.reference.precursor_mass_loss` applied to
:func:`~peptide_losses.reference.expected_residue_masses` (or to given residue
masses). One program handles ``SPECTRA`` whole spectra as rows of positions
(:mod:`.common`), so every per-spectrum sum stays on chip and no value is
added atomically: results are bitwise reproducible (the sum over spectra takes one
atomic ticket, :mod:`.common`, which decides who sums, not the order).

- Forward reads the logits once in their own dtype, takes the softmax and the
  expected mass per position in the compute dtype (float32; float64 for
  float64 input), and writes three (B,) rows: the loss, grad_mass = d loss / d M
  (per Da of peptide mass, 0 for a spectrum without positions) and whether the
  spectrum counts; both NaN for a spectrum with a bad value (a non-finite mass at an
  unmasked position, precursor m/z not finite or <= 0, charge < 1), which then
  counts. With ``REDUCE`` it also writes the sum or mean over spectra
  (:mod:`.common`). Nothing of size (B, L, V) is kept.
- Backward is the kernel of :mod:`.backward`, with grad_mass per spectrum.

Launchers allocate their outputs and never read device values on the host, so
they can run inside CUDA graphs and ``torch.compile``. They turn off fused
multiply-adds so that each operation rounds as in the reference's eager ops
(an input the reference maps to exactly 0 ppm gets exactly 0 here too).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .backward import ForwardOutputs, mass_backward
from .common import (
    REDUCE_MODES,
    _active_rows,
    _div,
    _finite,
    _log1p,
    _nan_where,
    _position_masses,
    _positive_finite,
    _reduce_rows,
    _rows,
    compute_dtype,
    counter,
    prediction_args,
    reduce_nothing,
    x_config,
)
from .constants import C13_C12, H2O, PROTON
from .launch import LeanKernel

_H2O = tl.constexpr(H2O)
_PROTON = tl.constexpr(PROTON)
_C13_C12 = tl.constexpr(C13_C12)


@triton.jit
def _precursor_fwd_kernel(
    x_ptr, stride_xb, stride_xl, stride_xv,
    masses_ptr, stride_m,
    mask_ptr, stride_mb, stride_ml,
    obs_ptr, stride_o,
    charge_ptr, stride_c,
    out_ptr, counter_ptr,
    B, L, N,
    V: tl.constexpr, ALIGN: tl.constexpr, X_CONTIGUOUS: tl.constexpr,
    SCALE: tl.constexpr, ISOTOPES: tl.constexpr, FROM_LOGITS: tl.constexpr, COMPUTE: tl.constexpr,
    REDUCE: tl.constexpr, SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr,
):
    local, s, l, in_bounds = _rows(B, L, SPECTRA, BLOCK_L)
    active = _active_rows(mask_ptr, stride_mb, stride_ml, s, l, in_bounds)
    mass = _position_masses(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, local, s, l, active, L, N,
                            V, ALIGN, X_CONTIGUOUS, FROM_LOGITS, COMPUTE, SPECTRA, BLOCK_W)

    # Per spectrum, in the reference's order of operations and rounding.
    peptide = tl.sum(tl.reshape(tl.where(active, mass, 0.0), (SPECTRA, BLOCK_L)), axis=1) + _H2O
    counted = tl.max(tl.reshape(active.to(tl.int32), (SPECTRA, BLOCK_L)), axis=1) > 0
    # The sum of the unmasked masses is not finite iff one of them is not (for masses below ~1e36 Da):
    # the bad-mass flag without another reduction.
    bad = ~_finite(peptide)
    s = tl.program_id(0) * SPECTRA + tl.arange(0, SPECTRA)
    s_ok = s < B
    charge = tl.load(charge_ptr + s.to(tl.int64) * stride_c, mask=s_ok, other=1)
    z = charge.to(COMPUTE)
    obs = tl.load(obs_ptr + s.to(tl.int64) * stride_o, mask=s_ok, other=1.0).to(COMPUTE)
    bad = bad | (charge < 1) | ~_positive_finite(obs)
    predicted = _div(peptide + z * _PROTON, z)
    ppm = tl.full([SPECTRA], float("inf"), COMPUTE)
    error = tl.zeros([SPECTRA], COMPUTE)
    for i in tl.static_range(len(ISOTOPES)):
        k_shift = tl.full([SPECTRA], ISOTOPES[i], COMPUTE) * _C13_C12
        error_k = predicted - (obs - _div(k_shift, z))
        ppm_k = _div(tl.abs(error_k), obs) * 1e6
        better = ppm_k < ppm  # strict: ties keep the first listed isotope error, as torch.min
        ppm = tl.where(better, ppm_k, ppm)
        error = tl.where(better, error_k, error)

    scale = tl.full([SPECTRA], SCALE, COMPUTE)
    loss = scale * _log1p(_div(ppm, scale))
    # d loss/d ppm * d ppm/d predicted * d predicted/d M; d|x|/dx = 0 at x = 0 as in autograd.
    sign = tl.where(error > 0, 1.0, tl.where(error < 0, -1.0, 0.0)).to(COMPUTE)
    grad_mass = _div(_div(scale, scale + ppm) * sign * 1e6, obs * z)
    tl.store(out_ptr + s, _nan_where(bad, tl.where(counted, loss, 0.0)), mask=s_ok)
    tl.store(out_ptr + B + s, _nan_where(bad, tl.where(counted, grad_mass, 0.0)), mask=s_ok)
    tl.store(out_ptr + 2 * B + s, (counted | bad).to(COMPUTE), mask=s_ok)
    if REDUCE != 0:
        _reduce_rows(out_ptr, out_ptr + 2 * B, out_ptr + 3 * B, counter_ptr, B, REDUCE == 2)


def precursor_forward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    scale: float,
    isotope_errors: tuple[int, ...],
    reduction: str = "none",
    config: dict | None = None,
) -> ForwardOutputs:
    """Per-spectrum loss, d loss / d M and counted flag of the precursor mass loss, and their reduction.

    Args:
        x: logits (B, L, V) with ``masses`` (V,) in Da, or residue masses
            (B, L) in Da with ``masses=None``; any float dtype, any strides.
        mask: (B, L) bool. precursor_mz: (B,) m/z. charge: (B,) integer.
        scale: ppm scale of the log. isotope_errors: k values (a tuple of ints), first wins ties.
        reduction: ``"none"``, or ``"sum"`` / ``"mean"`` computed by the same launch.
        config: a :func:`~.common.row_config` result, to override the default.

    Returns:
        :func:`precursor_outputs`, float32 (float64 for float64 ``x``): ``losses``, the
        log-scaled ppm (0 where no position counts), ``counted`` (an unmasked position,
        or a bad value: then its loss and grad_mass are NaN), ``loss`` as ``reduction``
        says, and ``grad_mass``, d loss / d M in 1/Da per spectrum.
    """
    batch, length = x.shape[:2]
    cfg = x_config(x, masses, config, "precursor")
    reduce = REDUCE_MODES[reduction]
    out = torch.empty(3 * batch + (2 if reduce else 0),
                      dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device)
    if batch:
        _PRECURSOR_FORWARD[((batch + cfg["SPECTRA"] - 1) // cfg["SPECTRA"],)](
            *prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            precursor_mz, precursor_mz.stride(0),
            charge, charge.stride(0),
            out, counter(x.device) if reduce else out, batch, length, x.numel(),
            V=x.shape[2] if masses is not None else 1, X_CONTIGUOUS=x.is_contiguous(), SCALE=float(scale),
            ISOTOPES=tuple(isotope_errors), FROM_LOGITS=masses is not None, COMPUTE=compute_dtype(x), REDUCE=reduce,
            enable_fp_fusion=False, **cfg,
        )
    elif reduce:
        reduce_nothing(out)
    return precursor_outputs(out, batch, reduction)


_PRECURSOR_FORWARD = LeanKernel(_precursor_fwd_kernel)


def precursor_outputs(rows: torch.Tensor, batch: int, reduction: str) -> ForwardOutputs:
    """The named outputs of :func:`precursor_forward` from its tensor: ``rows`` (3 * B [+ 2],) holds the
    losses, grad_mass, the counted flags [, then the reduced loss and the mean's denominator]."""
    return ForwardOutputs(rows, rows, batch, batch, reduction)


def precursor_backward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    grad_loss: torch.Tensor,
    forward: ForwardOutputs,
    *,
    config: dict | None = None,
) -> torch.Tensor:
    """Gradient of ``sum_b grad_loss[b] * loss[b] / denominator`` w.r.t. ``x``, contiguous, in x's dtype.

    Args:
        x, masses, mask: as given to :func:`precursor_forward`.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too), or a 0-dim one.
        forward: :func:`precursor_forward`'s outputs (the mean's denominator divides for
            ``reduction="mean"``).
    """
    return mass_backward(x, masses, mask, grad_loss, forward, config=config, loss="precursor", per_position=False)
