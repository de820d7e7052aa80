"""Triton kernels of the spectrum matching loss, forward and backward, and their launchers.

The maths is :func:`peptide_losses.reference.spectrum_matching_loss` applied to
:func:`~peptide_losses.reference.expected_residue_masses` (or to given residue
masses). One program handles one spectrum; every sum over its peaks and ions
stays on chip, and no value is added atomically, so results are bitwise reproducible
(the sum over spectra takes one atomic ticket, :mod:`.common`, which decides who sums,
not the order).

Forward, per spectrum:

1. expected mass per position (softmax of the logits in float64, whatever
   their dtype), masked prefix sums P and suffixes S = P[L-1] - P in float64,
   each rounded once to the compute dtype (float32; float64 for float64
   input), slot validity, as :func:`~peptide_losses.reference.fragment_mz`;
2. series s = (ion type, charge) holds ``((X_l + offset) + z * proton) / z`` at
   slot l, X = P or S: an affine map of P or S, so ions are computed, never
   gathered; the observed search reads them from a (B, S, L) table (NaN at
   invalid slots, so every comparison with one is false);
3. observed direction: per tile of BLOCK_N peaks, a running (min, argmin) over
   the ions taken one at a time in index order with a strict ``<``, so ties go
   to the lowest ion index as in ``torch.argmin``;
4. theoretical direction: per series, (BLOCK_N, BLOCK_L) distance tiles reduced
   over peaks (lowest peak index on ties), strict ``<`` across tiles;
5. when a gradient is wanted, d loss_b / d(fragment m/z) of every ion: per
   ion for the theoretical direction, and for the observed one summed over the
   peaks that chose it by one-hot reductions over the peak axis (a fixed order,
   no atomic additions); then d loss_b / d m_l by a reverse cumulative sum (prefix ions)
   and an exclusive one (suffix ions), written as one (B, L) row block.

Backward recomputes the softmax and writes ``g_b * dloss_b/dm_l * p_lv * (m_v - E_l)``
in the logits' dtype (``g_b * dloss_b/dm_l`` for residue masses). Nothing of
size (B, N, M) or (B, L, V) is written besides the gradient itself.

Launchers allocate their outputs and never read device values on the host, so
they can run inside CUDA graphs and ``torch.compile``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import triton
import triton.language as tl

from .backward import ForwardOutputs, mass_backward
from .common import (
    REDUCE_MODES,
    _active_rows,
    _div,
    _f64,
    _finite,
    _log1p,
    _nan_where,
    _position_masses,
    _positive_finite,
    _reduce_rows,
    _rows,
    cached_config,
    check_tile,
    compute_dtype,
    counter,
    fit_to,
    prediction_args,
    reduce_nothing,
    window,
)
from .constants import ION_OFFSETS, ION_TYPES, PREFIX_IONS, PROTON
from .launch import LeanKernel

# Series are passed as packed integers: 3 bits of ion-type code per type (its
# index in ION_TYPES) and 8 bits per charge, so that no option is a tensor
# (nothing to copy to the device) and no option forces a recompilation.
_TYPE_BITS = tl.constexpr(3)
_CHARGE_BITS = tl.constexpr(8)
#: Charges per call and largest charge the packed integer holds.
MAX_CHARGES = 63 // _CHARGE_BITS.value
MAX_CHARGE = 2**_CHARGE_BITS.value - 1
_CHARGE_MASK = tl.constexpr(MAX_CHARGE)
# The kernel tells prefix ions from suffix ions by code < 3.
assert [ion in PREFIX_IONS for ion in ION_TYPES] == [True] * 3 + [False] * 3

_OFFSET_A = tl.constexpr(ION_OFFSETS[ION_TYPES[0]])
_OFFSET_B = tl.constexpr(ION_OFFSETS[ION_TYPES[1]])
_OFFSET_C = tl.constexpr(ION_OFFSETS[ION_TYPES[2]])
_OFFSET_X = tl.constexpr(ION_OFFSETS[ION_TYPES[3]])
_OFFSET_Y = tl.constexpr(ION_OFFSETS[ION_TYPES[4]])
_OFFSET_Z = tl.constexpr(ION_OFFSETS[ION_TYPES[5]])
_PROTON = tl.constexpr(PROTON)

DIRECTION_FLAGS = {"observed": (True, False), "theoretical": (False, True), "both": (True, True)}
#: Peaks per tile and warps per program, chosen by a sweep (benchmarks/NOTES.md, "Launch
#: parameters"); two peaks per thread share each ion load in the search.
BLOCK_N = 256
NUM_WARPS = 4


@triton.jit
def _series(s, types_code, charges_code, n_charges, COMPUTE: tl.constexpr):
    """Offset (Da), z * proton (Da), z and prefix flag of series ``s`` (scalar or tensor).

    Series ``s = type_index * n_charges + charge_index``, as the reference's ion
    layout. The constants are rounded from float64 to the compute dtype once,
    as torch rounds Python scalars, so fragment m/z match the reference bitwise.
    """
    code = (types_code >> ((s // n_charges) * _TYPE_BITS)) & 7
    charge = (charges_code >> ((s % n_charges) * _CHARGE_BITS)) & _CHARGE_MASK
    offset = tl.where(code == 0, _f64(_OFFSET_A),
             tl.where(code == 1, _f64(_OFFSET_B),
             tl.where(code == 2, _f64(_OFFSET_C),
             tl.where(code == 3, _f64(_OFFSET_X),
             tl.where(code == 4, _f64(_OFFSET_Y), _f64(_OFFSET_Z))))))
    z_proton = charge.to(tl.float64) * _f64(_PROTON)
    return offset.to(COMPUTE), z_proton.to(COMPUTE), charge.to(COMPUTE), code < 3


@triton.jit
def _fragment_mz(prefix, suffix, s, types_code, charges_code, n_charges,
                 COMPUTE: tl.constexpr, RECIPROCAL: tl.constexpr):
    """m/z (BLOCK_L,) of series ``s`` at every slot, and its z and prefix flag.

    ``RECIPROCAL``: divide by z as torch does on CUDA, multiplying by the
    rounded 1 / z (on the CPU torch divides); fragment m/z then equal the
    reference's bitwise on the device at hand, so its exact ties stay ties.
    """
    offset, z_proton, z, is_prefix = _series(s, types_code, charges_code, n_charges, COMPUTE)
    neutral = tl.where(is_prefix, prefix, suffix) + offset
    if RECIPROCAL:
        mz = (neutral + z_proton) * _div(tl.zeros_like(z) + 1.0, z)
    else:
        mz = _div(neutral + z_proton, z)
    return mz, z, is_prefix


@triton.jit
def _and(flags, flag):
    """``flags & flag`` for a bool tensor and a bool scalar (the interpreter would give int32)."""
    return tl.where(flag, flags, False)


@triton.jit
def _distance(o, t, PPM: tl.constexpr):
    """|o - t| in Da, or in ppm of max(t, 1)."""
    d = tl.abs(o - t)
    if PPM:
        d = _div(d, tl.maximum(t, 1.0)) * 1e6
    return d


@triton.jit
def _distance_slope(o, t, PPM: tl.constexpr):
    """d distance / d t, with d|x|/dx = 0 at 0 and the clamp passing the gradient at t >= 1, as autograd."""
    sign = tl.where(t > o, 1.0, tl.where(t < o, -1.0, 0.0)).to(t.dtype)
    if PPM:
        c = tl.maximum(t, 1.0)
        clamp = tl.where(t >= 1.0, _div(tl.abs(o - t), c * c), 0.0)
        sign = (_div(sign, c) - clamp) * 1e6
    return sign


@triton.jit
def _log_scaled(d, TAU: tl.constexpr):
    """``tau * log1p(d / tau)`` (identity for TAU == 0, i.e. no distance_scale)."""
    if TAU == 0.0:
        return d
    else:
        tau = _f64(TAU).to(d.dtype)
        return tau * _log1p(_div(d, tau))


@triton.jit
def _log_scaled_slope(d, TAU: tl.constexpr):
    """Derivative of :func:`_log_scaled`: ``1 / (1 + d / tau)``."""
    if TAU == 0.0:
        return tl.zeros_like(d) + 1.0
    else:
        return _div(tl.zeros_like(d) + 1.0, 1.0 + _div(d, _f64(TAU).to(d.dtype)))


@triton.jit
def _power(x, POWER: tl.constexpr):
    """``x ** POWER`` for x >= 0, with 0 ** 0 = 1 as torch."""
    if POWER == 1.0:
        return x
    elif POWER == 0.0:
        return tl.zeros_like(x) + 1.0
    elif POWER == 2.0:
        return x * x
    else:
        p = _f64(POWER).to(x.dtype)
        return tl.where(x > 0, tl.exp2(p * tl.log2(tl.where(x > 0, x, 1.0))), 0.0)


@triton.jit
def _peaks(mz_ptr, stride_zb, stride_zn, peak_mask_ptr, stride_pb, stride_pn, b, n0, N,
           COMPUTE: tl.constexpr, BLOCK_N: tl.constexpr):
    """Indices, validity and m/z (0 where padded: padding may hold anything) of one peak tile."""
    n = n0 + tl.arange(0, BLOCK_N)
    ok = tl.load(peak_mask_ptr + b * stride_pb + n * stride_pn, mask=n < N, other=0) != 0
    o = tl.load(mz_ptr + b * stride_zb + n * stride_zn, mask=ok, other=0.0).to(COMPUTE)
    return n, ok, o


@triton.jit
def _intensities(intensity_ptr, stride_ib, stride_in, b, n, ok, COMPUTE: tl.constexpr):
    """Intensities of one peak tile (0 where padded: padding may hold anything)."""
    return tl.load(intensity_ptr + b * stride_ib + n * stride_in, mask=ok, other=0.0).to(COMPUTE)


@triton.jit
def _weights(intensity, ok, POWER: tl.constexpr):
    """Peak weights intensity ** power, 0 at padded peaks."""
    return tl.where(ok, _power(intensity, POWER), 0.0)


# The packed series codes change with the options only; specialising on their values
# (== 1, divisible by 16) would only recompile.
@triton.jit(do_not_specialize=["types_code", "charges_code"])
def _spectrum_fwd_kernel(
    x_ptr, stride_xb, stride_xl, stride_xv,
    masses_ptr, stride_m,
    mask_ptr, stride_mb, stride_ml,
    mz_ptr, stride_zb, stride_zn,
    intensity_ptr, stride_ib, stride_in,
    peak_mask_ptr, stride_pb, stride_pn,
    out_ptr, grad_mass_ptr, ions_ptr, counter_ptr,
    B, L, N, x_numel, rows_per_spectrum,
    types_code, charges_code, n_charges, n_series,
    OBSERVED: tl.constexpr, THEORETICAL: tl.constexpr, PPM: tl.constexpr, TAU: tl.constexpr,
    POWER: tl.constexpr, FROM_LOGITS: tl.constexpr, NEED_GRAD: tl.constexpr, COMPUTE: tl.constexpr,
    RECIPROCAL: tl.constexpr, REDUCE: tl.constexpr, V: tl.constexpr, ALIGN: tl.constexpr,
    X_CONTIGUOUS: tl.constexpr, BLOCK_L: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_N: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)
    # Candidate scoring gives K rows of masses per spectrum: row b reads the peaks of spectrum b // K.
    spectrum = b // rows_per_spectrum
    # ---- expected masses, prefix / suffix sums, valid slots (reference.fragment_mz)
    local, s1, l, in_bounds = _rows(B, L, 1, BLOCK_L)
    active = _active_rows(mask_ptr, stride_mb, stride_ml, s1, l, in_bounds)
    # In float64 whatever the compute dtype: fragment m/z sum up to L expected masses, and
    # float32 rounding of each would put the ions ~1e-4 Da off, which a distance_scale
    # turns into slope errors ~1e-4 / tau. (torch's float32 softmax and matmul carry such
    # errors; the kernel then is the closer of the two to the exact loss.) Given residue
    # masses are exact in float64 whatever their dtype.
    mass = _position_masses(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, local, s1, l, active, L,
                            x_numel, V, ALIGN, X_CONTIGUOUS, FROM_LOGITS, tl.float64, 1, BLOCK_W)
    m = tl.where(active, mass, 0.0)
    bad = tl.max((active & ~_finite(mass)).to(tl.int32), axis=0) > 0
    # Sums and the suffix's subtraction in float64, each rounded once, as the reference:
    # S = total - P in float32 would put small y ions of a long peptide ~1e-4 Da off.
    exact_prefix = tl.cumsum(m, axis=0)
    exact_total = tl.sum(tl.where(l == L - 1, exact_prefix, 0.0), axis=0)
    prefix = exact_prefix.to(COMPUTE)
    suffix = (exact_total - exact_prefix).to(COMPUTE)
    n_active = tl.sum(active.to(tl.int32), axis=0)
    slot_ok = active & (n_active - tl.cumsum(active.to(tl.int32), axis=0) > 0)
    n_slots = tl.sum(slot_ok.to(tl.int32), axis=0)
    slot_end = tl.max(tl.where(slot_ok, l + 1, 0), axis=0)
    has_ion = n_slots > 0

    # ---- peak weights: which spectra count, and where the last real peak is
    total_weight = tl.zeros((), COMPUTE)
    n_peaks = tl.zeros((), tl.int32)
    peak_end = tl.zeros((), tl.int32)
    for n0 in range(0, N, BLOCK_N):
        n, ok, peak_mz = _peaks(mz_ptr, stride_zb, stride_zn, peak_mask_ptr, stride_pb, stride_pn, spectrum, n0, N,
                                COMPUTE, BLOCK_N)
        peak_intensity = _intensities(intensity_ptr, stride_ib, stride_in, spectrum, n, ok, COMPUTE)
        total_weight += tl.sum(_weights(peak_intensity, ok, POWER), axis=0)
        bad_peak = ok & (~_positive_finite(peak_mz) | ~((peak_intensity >= 0) & _finite(peak_intensity)))
        bad = bad | (tl.max(bad_peak.to(tl.int32), axis=0) > 0)
        n_peaks += tl.sum(ok.to(tl.int32), axis=0)
        peak_end = tl.maximum(peak_end, tl.max(tl.where(ok, n + 1, 0).to(tl.int32), axis=0))
    has_peak = n_peaks > 0
    counted = has_ion & has_peak & (total_weight > 0)

    loss = tl.zeros((), COMPUTE)
    grad_prefix = tl.zeros([BLOCK_L], COMPUTE)  # d loss_b / d P_l
    grad_suffix = tl.zeros([BLOCK_L], COMPUTE)  # d loss_b / d S_l
    if OBSERVED:
        ions = ions_ptr + b * n_series * L
        for s in range(0, n_series):
            table_mz, table_z, table_prefix = _fragment_mz(prefix, suffix, s, types_code, charges_code, n_charges,
                                                           COMPUTE, RECIPROCAL)
            tl.store(ions + s * L + l, tl.where(slot_ok, table_mz, float("nan")), mask=l < L)
        tl.debug_barrier()  # the table is read back by other threads of this program

        weight_norm = tl.where(counted, total_weight, 1.0)
        weighted = tl.zeros((), COMPUTE)
        for n0 in range(0, peak_end, BLOCK_N):
            n, ok, o = _peaks(mz_ptr, stride_zb, stride_zn, peak_mask_ptr, stride_pb, stride_pn, spectrum, n0, N,
                              COMPUTE, BLOCK_N)
            w = _weights(_intensities(intensity_ptr, stride_ib, stride_in, spectrum, n, ok, COMPUTE), ok, POWER)
            best = tl.full([BLOCK_N], float("inf"), COMPUTE)
            best_j = tl.zeros([BLOCK_N], tl.int32)
            for s in range(0, n_series):
                j = s * L
                ion = ions + j  # stepped, not recomputed: the loop body is a handful of instructions
                for k in range(0, slot_end):
                    dist = _distance(o, tl.load(ion), PPM)
                    closer = dist < best
                    best = tl.where(closer, dist, best)
                    best_j = tl.where(closer, j, best_j)
                    ion += 1
                    j += 1
            use = _and(ok, has_ion)
            nearest = tl.where(use, best, 0.0)
            weighted += tl.sum(w * _log_scaled(nearest, TAU), axis=0)
            if NEED_GRAD:
                nearest_mz = tl.load(ions + best_j, mask=use, other=1.0)
                slope = _div(w * _log_scaled_slope(nearest, TAU) * _distance_slope(o, nearest_mz, PPM), weight_norm)
                peak_offset, peak_z_proton, peak_z, peak_prefix = _series(best_j // L, types_code, charges_code,
                                                                          n_charges, COMPUTE)
                g = _div(tl.where(_and(use, counted), slope, 0.0), peak_z)
                hit = (best_j % L)[:, None] == l[None, :]
                grad_prefix += tl.sum(tl.where(hit, tl.where(peak_prefix, g, 0.0)[:, None], 0.0), axis=0)
                grad_suffix += tl.sum(tl.where(hit, tl.where(peak_prefix, 0.0, g)[:, None], 0.0), axis=0)
        loss += _div(weighted, weight_norm)

    if THEORETICAL:
        # Names differ from the observed block's: Triton carries a name into later loops.
        ion_norm = tl.maximum(n_slots * n_series, 1).to(COMPUTE)
        nearest_sum = tl.zeros((), COMPUTE)
        for s in range(0, n_series):
            ion_mz, ion_z, ion_prefix = _fragment_mz(prefix, suffix, s, types_code, charges_code, n_charges,
                                                     COMPUTE, RECIPROCAL)
            ion_best = tl.full([BLOCK_L], float("inf"), COMPUTE)
            ion_peak_mz = tl.zeros([BLOCK_L], COMPUTE)
            for n0 in range(0, peak_end, BLOCK_N):
                n, ok, o = _peaks(mz_ptr, stride_zb, stride_zn, peak_mask_ptr, stride_pb, stride_pn, spectrum, n0, N,
                                  COMPUTE, BLOCK_N)
                tile = _distance(o[:, None], ion_mz[None, :], PPM)
                tile = tl.where(ok[:, None] & slot_ok[None, :], tile, float("inf"))
                tile_best, arg = tl.min(tile, axis=0, return_indices=True, return_indices_tie_break_left=True)
                tile_closer = tile_best < ion_best
                ion_best = tl.where(tile_closer, tile_best, ion_best)
                tile_mz = tl.load(mz_ptr + spectrum * stride_zb + (n0 + arg) * stride_zn, mask=tile_closer, other=0.0)
                ion_peak_mz = tl.where(tile_closer, tile_mz.to(COMPUTE), ion_peak_mz)
            ion_use = _and(slot_ok, has_peak)
            ion_nearest = tl.where(ion_use, ion_best, 0.0)
            nearest_sum += tl.sum(_log_scaled(ion_nearest, TAU), axis=0)
            if NEED_GRAD:
                ion_slope = _div(_log_scaled_slope(ion_nearest, TAU) * _distance_slope(ion_peak_mz, ion_mz, PPM),
                                 ion_norm)
                ion_g = _div(tl.where(_and(ion_use, counted), ion_slope, 0.0), ion_z)
                grad_prefix += tl.where(ion_prefix, ion_g, 0.0)
                grad_suffix += tl.where(ion_prefix, 0.0, ion_g)
        loss += _div(nearest_sum, ion_norm)

    # A bad value: NaN loss and gradient, and the spectrum counts (peptide_losses.checks).
    tl.store(out_ptr + b, _nan_where(bad, tl.where(counted, loss, 0.0)))
    tl.store(out_ptr + B + b, (counted | bad).to(COMPUTE))
    if NEED_GRAD:
        # P_l = sum_{l' <= l} m_l' and S_l = sum_{l' > l} m_l'.
        exclusive_suffix = tl.cumsum(grad_suffix, axis=0) - grad_suffix
        grad_mass = tl.cumsum(grad_prefix, axis=0, reverse=True) + exclusive_suffix
        tl.store(grad_mass_ptr + b * L + l, tl.where(active, _nan_where(bad, grad_mass), 0.0), mask=l < L)
    if REDUCE != 0:
        _reduce_rows(out_ptr, out_ptr + B, out_ptr + 2 * B, counter_ptr, B, REDUCE == 2)


def reciprocal_division(device: torch.device) -> bool:
    """Whether torch divides a tensor by a Python number on ``device`` as a multiplication by the
    rounded reciprocal (CUDA does, the CPU divides): the kernel's ``RECIPROCAL``, so that its
    fragment m/z equal the reference's bitwise on that device. Tests swap it to run the other rule."""
    return device.type == "cuda"


def pack_series(ion_types: Sequence[str], charges: Sequence[int]) -> tuple[int, int]:
    """The (types_code, charges_code) integers the kernel decodes series from."""
    if len(charges) > MAX_CHARGES or max(charges) > MAX_CHARGE:
        raise ValueError(
            f"charges: the Triton kernel takes at most {MAX_CHARGES} charges up to {MAX_CHARGE}, "
            f"got {tuple(charges)}; use backend='reference'"
        )
    types_code = sum(ION_TYPES.index(ion) << (_TYPE_BITS.value * i) for i, ion in enumerate(ion_types))
    charges_code = sum(int(z) << (_CHARGE_BITS.value * i) for i, z in enumerate(charges))
    return types_code, charges_code


def launch_config(length: int, vocab: int | None, block_n: int | None = None,
                  num_warps: int | None = None, element_size: int = 4, contiguous: bool = True) -> dict:
    """Block sizes and warps of the forward for L positions and V tokens (``vocab=None``: residue masses)
    of ``element_size`` bytes.

    ``block_n`` (peaks per tile, a power of 2) and ``num_warps`` override the
    defaults (tests use small tiles to cross tile borders; benchmarks tune).
    """
    # Sizes are symbolic while torch.compile traces with dynamic shapes; block sizes are
    # compile-time constants anyway, and bit tricks on symbols make sympy crawl: specialise.
    length, vocab = int(length), None if vocab is None else int(vocab)
    block_l = max(16, triton.next_power_of_2(max(length, 1)))
    block_w, align = window(vocab, element_size, contiguous)
    check_tile(block_l, block_w, length, vocab, "spectrum")
    return dict(BLOCK_L=block_l, BLOCK_W=block_w, ALIGN=align, BLOCK_N=block_n or BLOCK_N,
                num_warps=num_warps or NUM_WARPS)


def spectrum_forward(
    x: torch.Tensor,
    masses: torch.Tensor | None,
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    *,
    ion_types: Sequence[str],
    charges: Sequence[int],
    direction: str,
    distance: str,
    distance_scale: float | None,
    intensity_power: float,
    need_grad: bool,
    reduction: str = "none",
    config: dict | None = None,
    rows_per_spectrum: int = 1,
) -> ForwardOutputs:
    """Per-spectrum loss and counted flag, and dloss_b/dm_l, of the spectrum matching loss, and their reduction.

    Args:
        x: logits (B, L, V) with ``masses`` (V,) in Da, or residue masses
            (B, L) in Da with ``masses=None``; any float dtype, any strides.
        mask: (B, L) bool. mz: (B, N) observed m/z. intensity: (B, N) >= 0.
        peak_mask: (B, N) bool. Options: validated, as the reference's
            (ion_types and charges as tuples).
        need_grad: also compute dloss_b/dm_l (else ``grad_mass`` is empty).
        reduction: ``"none"``, or ``"sum"`` / ``"mean"`` computed by the same launch.
        config: a :func:`launch_config` result, to override the default.
        rows_per_spectrum: K, for K rows of ``x`` (candidate peptides) per spectrum: ``x``
            and ``mask`` then have B * K rows, row r scored against spectrum r // K of
            ``mz``, ``intensity`` and ``peak_mask`` (B rows), which are never copied.

    Returns:
        :func:`spectrum_outputs`, float32 (float64 for float64 ``x``): ``losses`` in Da
        or ppm (0 where the spectrum does not count), ``counted`` (a spectrum with a
        bad value counts, with a NaN loss and NaN grad_mass), ``loss`` as ``reduction``
        says, and ``grad_mass`` (B, L): d loss_b / d m_l per Da of residue mass (0 at
        masked positions), or (0,) without ``need_grad``.
    """
    batch, length = x.shape[:2]
    n_peaks = mz.shape[1]
    vocab = x.shape[2] if masses is not None else None
    if config is None:
        cfg = cached_config(launch_config, int(length), None if vocab is None else int(vocab), BLOCK_N, NUM_WARPS,
                            x.element_size(), x.is_contiguous())
    else:
        cfg = fit_to(x, config)
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    types_code, charges_code = cached_config(pack_series, ion_types, charges)
    n_series = len(ion_types) * len(charges)
    observed, theoretical = DIRECTION_FLAGS[direction]
    reduce = REDUCE_MODES[reduction]
    rows = torch.empty(2 * batch + (2 if reduce else 0), dtype=compute, device=x.device)
    grad_mass = torch.empty((batch, length) if need_grad else (0,), dtype=compute, device=x.device)
    # The observed search reads fragment m/z back from this (B, S, L) table.
    ions = torch.empty((batch, n_series, length) if observed else (0,), dtype=compute, device=x.device)
    if batch:
        _SPECTRUM_FORWARD[(batch,)](
            *prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            mz, mz.stride(0), mz.stride(1),
            intensity, intensity.stride(0), intensity.stride(1),
            peak_mask, peak_mask.stride(0), peak_mask.stride(1),
            rows, grad_mass, ions, counter(x.device) if reduce else rows,
            batch, length, n_peaks, x.numel(), rows_per_spectrum,
            types_code, charges_code, len(charges), n_series,
            OBSERVED=observed, THEORETICAL=theoretical, PPM=distance == "ppm",
            TAU=0.0 if distance_scale is None else float(distance_scale), POWER=float(intensity_power),
            FROM_LOGITS=masses is not None, NEED_GRAD=need_grad, COMPUTE=compute_dtype(x),
            RECIPROCAL=reciprocal_division(x.device), REDUCE=reduce, V=vocab or 1, X_CONTIGUOUS=x.is_contiguous(), **cfg,
        )
    elif reduce:
        reduce_nothing(rows)
    return spectrum_outputs(rows, grad_mass, batch, reduction)


_SPECTRUM_FORWARD = LeanKernel(_spectrum_fwd_kernel)


def spectrum_outputs(rows: torch.Tensor, grad_mass: torch.Tensor, batch: int, reduction: str) -> ForwardOutputs:
    """The named outputs of :func:`spectrum_forward` from its tensors: ``rows`` (2 * B [+ 2],) holds
    the losses, then the counted flags [, then the reduced loss and the mean's denominator]."""
    return ForwardOutputs(rows, grad_mass, 0, batch, reduction)


def spectrum_backward(
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
        x, masses, mask: as given to :func:`spectrum_forward`.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too), or a 0-dim one.
        forward: :func:`spectrum_forward`'s outputs, with ``need_grad`` (the mean's denominator
            divides for ``reduction="mean"``).
        config: a :func:`~.common.row_config` result, to override the default.
    """
    return mass_backward(x, masses, mask, grad_loss, forward, config=config, loss="spectrum", per_position=True)
