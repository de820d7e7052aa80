"""Triton kernels of the precursor mass loss, forward and backward, and their launchers.

The maths is :func:`peptide_losses.reference.precursor_mass_loss` applied to
:func:`~peptide_losses.reference.expected_residue_masses` (or to given residue
masses). One program handles ``SPECTRA`` whole spectra as rows of positions
(:mod:`peptide_losses.kernels.common`), so every per-spectrum sum stays on chip
and no atomics are needed: results are bitwise reproducible.

- Forward reads the logits once in their own dtype, takes the softmax and the
  expected mass per position in the compute dtype (float32; float64 for
  float64 input), and writes three (B,) rows: the loss, dloss/dM (per Da of
  peptide mass, 0 for a spectrum without positions) and whether the spectrum
  counts; both NaN for a spectrum with a bad value (a non-finite mass at an
  unmasked position, precursor m/z not finite or <= 0, charge < 1), which then
  counts. With ``REDUCE`` it also writes the sum or mean over spectra
  (:mod:`peptide_losses.kernels.reduction`). Nothing of size (B, L, V) is kept.
- Backward recomputes the softmax and writes
  ``g_b * dloss/dM_b * p_lv * (m_v - E_l)`` (0 at masked positions) straight in
  the logits' dtype; for residue masses, ``g_b * dloss/dM_b`` at unmasked positions.
  ``g_b`` is the upstream gradient, divided by the mean's denominator when one is given.

Launchers allocate their outputs and never read device values on the host, so
they can run inside CUDA graphs and ``torch.compile``. They turn off fused
multiply-adds so that each operation rounds as in the reference's eager ops
(an input the reference maps to exactly 0 ppm gets exactly 0 here too).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from peptide_losses.constants import C13_C12, H2O, PROTON
from peptide_losses.kernels.common import (
    _active_rows,
    _div,
    _log1p,
    _position_masses,
    _rows,
    compute_dtype,
    mass_backward,
    prediction_args,
    x_config,
)
from peptide_losses.kernels.launch import LeanKernel
from peptide_losses.kernels.reduction import REDUCE_MODES, _reduce_rows, counter, reduce_nothing
from peptide_losses.kernels.validity import _finite, _nan_where, _positive_finite

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
    # kernels/validity.py without another reduction.
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
    dloss_dmass = _div(_div(scale, scale + ppm) * sign * 1e6, obs * z)
    tl.store(out_ptr + s, _nan_where(bad, tl.where(counted, loss, 0.0)), mask=s_ok)
    tl.store(out_ptr + B + s, _nan_where(bad, tl.where(counted, dloss_dmass, 0.0)), mask=s_ok)
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
) -> torch.Tensor:
    """Per-spectrum loss, dloss/dM and counted flag of the precursor mass loss, and their reduction.

    Args:
        x: logits (B, L, V) with ``masses`` (V,) in Da, or residue masses
            (B, L) in Da with ``masses=None``; any float dtype, any strides.
        mask: (B, L) bool. precursor_mz: (B,) m/z. charge: (B,) integer.
        scale: ppm scale of the log. isotope_errors: k values (a tuple of ints), first wins ties.
        reduction: ``"none"``, or ``"sum"`` / ``"mean"`` computed by the same launch.
        config: a :func:`~peptide_losses.kernels.common.row_config` result, to override the default.

    Returns:
        float32 (float64 for float64 ``x``). ``"none"``: (3, B) rows, the
        log-scaled ppm loss (0 where no position counts), dloss/dM in 1/Da, and
        1.0 where the spectrum counts (has an unmasked position, or a bad value:
        then its loss and dloss/dM are NaN), else 0.0. ``"sum"`` / ``"mean"``:
        flat (3 * B + 2,), those rows, then the reduced loss and the mean's
        denominator (undefined for ``"sum"``).
    """
    batch, length = x.shape[:2]
    cfg = x_config(x, masses, config, "precursor")
    reduce = REDUCE_MODES[reduction]
    out = torch.empty(3 * batch + 2 if reduce else (3, batch),
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
    return out


_PRECURSOR_FORWARD = LeanKernel(_precursor_fwd_kernel)


def precursor_backward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    grad_loss: torch.Tensor,
    dloss_dmass: torch.Tensor,
    denominator: torch.Tensor | None = None,
    *,
    config: dict | None = None,
    grad_mass_offset: int = 0,
    denominator_index: int = 0,
) -> torch.Tensor:
    """Gradient of ``sum_b grad_loss[b] * loss[b] / denominator`` w.r.t. ``x``, contiguous, in x's dtype.

    Args:
        x, masses, mask: as given to :func:`precursor_forward`.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too).
        dloss_dmass: (B,) contiguous from element ``grad_mass_offset`` on: row 1 of
            :func:`precursor_forward`'s output, or that output itself with offset B.
        denominator: the mean's denominator at element ``denominator_index``, or None for 1.
    """
    return mass_backward(x, masses, mask, grad_loss, dloss_dmass, denominator, config=config, loss="precursor",
                         per_position=False, grad_mass_offset=grad_mass_offset, denominator_index=denominator_index)
