"""Triton kernels of the precursor mass loss, forward and backward, and their launchers.

The maths is :func:`peptide_losses.reference.precursor_mass_loss` applied to
:func:`~peptide_losses.reference.expected_residue_masses` (or to given residue
masses). One program handles ``SPECTRA`` whole spectra as a
(SPECTRA, BLOCK_L, BLOCK_V) tile, so every per-spectrum sum stays on chip and
no atomics are needed: results are bitwise reproducible.

- Forward reads the logits once in their own dtype, takes the softmax and the
  expected mass per position in the compute dtype (float32; float64 for
  float64 input), and writes three (B,) rows: the loss, dloss/dM (per Da of
  peptide mass, 0 for a spectrum without positions) and whether the spectrum
  counts. Nothing of size (B, L, V) is kept.
- Backward recomputes the softmax and writes
  ``g_b * dloss/dM_b * p_lv * (m_v - E_l)`` (0 at masked positions) straight in
  the logits' dtype; for residue masses, ``g_b * dloss/dM_b`` at unmasked positions.

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
from peptide_losses.kernels.traceable import traceable

_H2O = tl.constexpr(H2O)
_PROTON = tl.constexpr(PROTON)
_C13_C12 = tl.constexpr(C13_C12)

#: Tile elements (SPECTRA * BLOCK_L * BLOCK_V) one program aims at: several
#: spectra per program for short peptides, so programs are not too small.
TILE_ELEMENTS = 2048
#: Largest tile of one spectrum (BLOCK_L * BLOCK_V) the kernels accept; beyond,
#: registers spill so badly that the reference is the better choice.
MAX_SPECTRUM_TILE = 2**16


@triton.jit
def _div(a, b):
    """IEEE division in both compute dtypes (Triton's float32 '/' is approximate,
    the reference's is not; the exact-zero error case depends on it)."""
    if a.dtype == tl.float64:
        return a / b
    else:
        return tl.math.div_rn(a, b)


@triton.jit
def _log1p(x):
    """log(1 + x) to about one ulp of x's dtype, x >= 0.

    Goldberg's correction of log(1 + x) in float64: log is the only
    logarithm that runs under the interpreter too (libdevice's log1p does not),
    and float64 makes the float32 result exact to rounding.
    """
    xd = x.to(tl.float64)
    u = 1.0 + xd
    exact = u == 1.0
    return tl.where(exact, xd, tl.log(u) * xd / tl.where(exact, 1.0, u - 1.0)).to(x.dtype)


@triton.jit
def _tile_indices(B, L, SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr):
    """Spectrum index (SPECTRA, 1) int64 and position (1, BLOCK_L) of this program's tile."""
    b = tl.program_id(0).to(tl.int64) * SPECTRA + tl.arange(0, SPECTRA)[:, None]
    l = tl.arange(0, BLOCK_L)[None, :]
    return b, l, (b < B) & (l < L)


@triton.jit
def _x_strides(stride_xb, stride_xl, stride_xv, L, V: tl.constexpr, X_CONTIGUOUS: tl.constexpr):
    """Strides of x (B, L, V), or (B, L) with V = 1; for contiguous x, ones the compiler can see.

    With V a compile-time constant, offsets of contiguous logits are provably
    aligned to the largest power of 2 dividing V: loads and stores vectorize and
    each thread holds several tokens of a row, so the per-row sums over V take
    fewer cross-thread shuffles (which otherwise bound these kernels).
    """
    if X_CONTIGUOUS:
        return L * V, V, 1
    else:
        return stride_xb, stride_xl, stride_xv


@triton.jit
def _active_positions(mask_ptr, stride_mb, stride_ml, b, l, in_bounds):
    """(SPECTRA, BLOCK_L) True at real, unmasked positions."""
    return tl.load(mask_ptr + b * stride_mb + l * stride_ml, mask=in_bounds, other=0) != 0


@triton.jit
def _softmax_expectation(
    x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, b, l, active, V,
    COMPUTE: tl.constexpr, BLOCK_V: tl.constexpr,
):
    """Probabilities p (S, BL, BV), token masses m (1, 1, BV) and E = sum_v p m (S, BL).

    Masked positions are not read (their logits may be anything); they get a
    uniform softmax that the callers zero out.
    """
    v = tl.arange(0, BLOCK_V)[None, None, :]
    v_ok = v < V
    ptrs = x_ptr + b[:, :, None] * stride_xb + l[:, :, None] * stride_xl + v * stride_xv
    x = tl.load(ptrs, mask=active[:, :, None] & v_ok, other=0.0).to(COMPUTE)
    x = tl.where(v_ok, x, float("-inf"))
    e = tl.exp(x - tl.max(x, axis=2)[:, :, None])
    p = e * (1.0 / tl.sum(e, axis=2))[:, :, None]
    m = tl.load(masses_ptr + v * stride_m, mask=v_ok, other=0.0).to(COMPUTE)
    return p, m, tl.sum(p * m, axis=2)


@triton.jit
def _precursor_fwd_kernel(
    x_ptr, stride_xb, stride_xl, stride_xv,
    masses_ptr, stride_m,
    mask_ptr, stride_mb, stride_ml,
    obs_ptr, stride_o,
    charge_ptr, stride_c,
    out_ptr,
    B, L,
    V: tl.constexpr, X_CONTIGUOUS: tl.constexpr,
    SCALE: tl.constexpr, ISOTOPES: tl.constexpr, FROM_LOGITS: tl.constexpr, COMPUTE: tl.constexpr,
    SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_V: tl.constexpr,
):
    b, l, in_bounds = _tile_indices(B, L, SPECTRA, BLOCK_L)
    active = _active_positions(mask_ptr, stride_mb, stride_ml, b, l, in_bounds)
    stride_xb, stride_xl, stride_xv = _x_strides(stride_xb, stride_xl, stride_xv, L, V, X_CONTIGUOUS)
    if FROM_LOGITS:
        _, _, mass = _softmax_expectation(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m,
                                          b, l, active, V, COMPUTE, BLOCK_V)
    else:
        mass = tl.load(x_ptr + b * stride_xb + l * stride_xl, mask=active, other=0.0).to(COMPUTE)

    # Per spectrum, in the reference's order of operations and rounding.
    s = tl.program_id(0).to(tl.int64) * SPECTRA + tl.arange(0, SPECTRA)
    s_ok = s < B
    counted = tl.max(active.to(tl.int32), axis=1) > 0
    peptide = tl.sum(tl.where(active, mass, 0.0), axis=1) + _H2O
    z = tl.load(charge_ptr + s * stride_c, mask=s_ok, other=1).to(COMPUTE)
    obs = tl.load(obs_ptr + s * stride_o, mask=s_ok, other=1.0).to(COMPUTE)
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
    tl.store(out_ptr + s, tl.where(counted, loss, 0.0), mask=s_ok)
    tl.store(out_ptr + B + s, tl.where(counted, dloss_dmass, 0.0), mask=s_ok)
    tl.store(out_ptr + 2 * B + s, counted.to(COMPUTE), mask=s_ok)


@triton.jit
def _precursor_bwd_kernel(
    x_ptr, stride_xb, stride_xl, stride_xv,
    masses_ptr, stride_m,
    mask_ptr, stride_mb, stride_ml,
    grad_loss_ptr, stride_g,
    dloss_dmass_ptr,
    grad_ptr,
    B, L,
    V: tl.constexpr, X_CONTIGUOUS: tl.constexpr,
    FROM_LOGITS: tl.constexpr, COMPUTE: tl.constexpr,
    SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_V: tl.constexpr,
):
    b, l, in_bounds = _tile_indices(B, L, SPECTRA, BLOCK_L)
    active = _active_positions(mask_ptr, stride_mb, stride_ml, b, l, in_bounds)
    stride_xb, stride_xl, stride_xv = _x_strides(stride_xb, stride_xl, stride_xv, L, V, X_CONTIGUOUS)
    s_ok = b < B
    coef = (tl.load(grad_loss_ptr + b * stride_g, mask=s_ok, other=0.0).to(COMPUTE)
            * tl.load(dloss_dmass_ptr + b, mask=s_ok, other=0.0))
    if FROM_LOGITS:
        p, m, mass = _softmax_expectation(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m,
                                          b, l, active, V, COMPUTE, BLOCK_V)
        grad = coef[:, :, None] * p * (m - mass[:, :, None])
        grad = tl.where(active[:, :, None], grad, 0.0)
        v = tl.arange(0, BLOCK_V)[None, None, :]
        # The gradient is allocated contiguous.
        ptrs = grad_ptr + (b[:, :, None] * L + l[:, :, None]) * V + v
        tl.store(ptrs, grad.to(grad_ptr.dtype.element_ty), mask=in_bounds[:, :, None] & (v < V))
    else:
        grad = tl.where(active, coef, 0.0)
        tl.store(grad_ptr + b * L + l, grad.to(grad_ptr.dtype.element_ty), mask=in_bounds)


def launch_config(batch: int, length: int, vocab: int | None, tile_elements: int = TILE_ELEMENTS,
                  num_warps: int | None = None) -> dict:
    """Block sizes and warps for (B, L, V); ``vocab=None`` for residue masses (B, L).

    ``tile_elements`` and ``num_warps`` override the tuned defaults (benchmarks).
    """
    # Sizes are symbolic while torch.compile traces with dynamic shapes; block sizes are
    # compile-time constants anyway, and bit tricks on symbols make sympy crawl: specialise.
    batch, length, vocab = int(batch), int(length), None if vocab is None else int(vocab)
    block_l = triton.next_power_of_2(max(length, 1))
    block_v = triton.next_power_of_2(vocab) if vocab is not None else 1
    spectrum_tile = block_l * block_v
    if spectrum_tile > MAX_SPECTRUM_TILE:
        raise ValueError(
            f"the Triton precursor kernel takes L * V up to {MAX_SPECTRUM_TILE} (padded to powers of 2), "
            f"got L={length}, V={vocab}; use backend='reference'"
        )
    spectra = max(1, min(tile_elements // spectrum_tile, triton.next_power_of_2(max(batch, 1))))
    if num_warps is None:
        num_warps = max(1, min(8, spectra * spectrum_tile // 512))
    return dict(SPECTRA=spectra, BLOCK_L=block_l, BLOCK_V=block_v, num_warps=num_warps)


def _compute_dtype(x: torch.Tensor):
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def _prediction_args(x: torch.Tensor, masses: torch.Tensor | None) -> tuple:
    """Pointer/stride arguments of logits (+ masses) or of residue masses (masses None)."""
    if masses is None:
        # No vocabulary: x is read as (B, L); the masses pointer is never dereferenced.
        return (x, x.stride(0), x.stride(1), 0, x, 0)
    if masses.shape[0] < 1:
        raise ValueError("masses must hold at least one token mass")
    return (x, *x.stride(), masses, masses.stride(0))


def precursor_forward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    scale: float,
    isotope_errors: tuple[int, ...],
    config: dict | None = None,
) -> torch.Tensor:
    """Per-spectrum loss, dloss/dM and counted flag of the precursor mass loss.

    Args:
        x: logits (B, L, V) with ``masses`` (V,) in Da, or residue masses
            (B, L) in Da with ``masses=None``; any float dtype, any strides.
        mask: (B, L) bool. precursor_mz: (B,) m/z. charge: (B,) integer.
        scale: ppm scale of the log. isotope_errors: k values, first wins ties.
        config: a :func:`launch_config` result, to override the default.

    Returns:
        (3, B) float32 (float64 for float64 ``x``): rows are the log-scaled ppm
        loss (0 where no position counts), dloss/dM in 1/Da, and 1.0 where the
        spectrum has an unmasked position, else 0.0.
    """
    batch, length = x.shape[:2]
    vocab = x.shape[2] if masses is not None else None
    cfg = dict(config or launch_config(batch, length, vocab))
    out = torch.empty((3, batch), dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
                      device=x.device)
    if batch:
        num_warps = cfg.pop("num_warps")
        traceable(_precursor_fwd_kernel, x)[(triton.cdiv(batch, cfg["SPECTRA"]),)](
            *_prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            precursor_mz, precursor_mz.stride(0),
            charge, charge.stride(0),
            out, batch, length, V=vocab or 1, X_CONTIGUOUS=x.is_contiguous(),
            SCALE=float(scale), ISOTOPES=tuple(int(k) for k in isotope_errors),
            FROM_LOGITS=masses is not None, COMPUTE=_compute_dtype(x), num_warps=num_warps,
            enable_fp_fusion=False, **cfg,
        )
    return out


def precursor_backward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    grad_loss: torch.Tensor,
    dloss_dmass: torch.Tensor,
    *,
    config: dict | None = None,
) -> torch.Tensor:
    """Gradient of ``sum_b grad_loss[b] * loss[b]`` w.r.t. ``x``, contiguous, in x's dtype.

    Args:
        x, masses, mask: as given to :func:`precursor_forward`.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too).
        dloss_dmass: (B,) contiguous, row 1 of :func:`precursor_forward`'s output.
    """
    batch, length = x.shape[:2]
    vocab = x.shape[2] if masses is not None else None
    cfg = dict(config or launch_config(batch, length, vocab))
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if batch:
        num_warps = cfg.pop("num_warps")
        traceable(_precursor_bwd_kernel, x)[(triton.cdiv(batch, cfg["SPECTRA"]),)](
            *_prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            grad_loss, grad_loss.stride(0),
            dloss_dmass, grad,
            batch, length, V=vocab or 1, X_CONTIGUOUS=x.is_contiguous(),
            FROM_LOGITS=masses is not None, COMPUTE=_compute_dtype(x), num_warps=num_warps,
            enable_fp_fusion=False, **cfg,
        )
    return grad
