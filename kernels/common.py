"""Pieces both losses' kernels share: exact arithmetic, the row tile over (B, L) positions,
the softmax expectation over aligned windows of V, and the gradient of the logits.

The row tile: a program handles ``SPECTRA`` whole spectra as ``SPECTRA * BLOCK_L``
rows (one per position, flattened spectrum-major), each row a window of
``BLOCK_W`` logits. Per-row sums over V stay on chip, per-spectrum sums are
reductions over a reshaped (SPECTRA, BLOCK_L) view: no atomics, results are
bitwise reproducible.

Why windows: in a contiguous (B, L, V) tensor row r starts at flat index r * V.
With an odd V (the default vocabulary has 29 tokens) no row start is aligned, so
Triton cannot vectorise loads of rows and spreads each row over 32 threads, one
element each: five rounds of shuffles per sum over V, most of the kernels' time
(Nsight Compute: instruction-bound, DRAM 7 % busy). Reading each row from the
aligned index at or below its start (``ALIGN`` elements, up to 16 bytes) makes
every load a vector load and puts a row on 8 threads; the up to ``ALIGN - 1``
leading and the trailing elements of a window belong to neighbouring rows and
are masked out of the sums (they are read, never used or written).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from peptide_losses.kernels.launch import LeanKernel

#: Tile elements (rows x window) one program aims at: on the H100, 1024 with 2 warps
#: was fastest for the precursor loss's kernels at B = 4096 and 16384 (benchmarks/NOTES.md).
TILE_ELEMENTS = 1024
#: Largest tile of one spectrum (BLOCK_L * BLOCK_W) the kernels accept; beyond,
#: registers spill so badly that the reference is the better choice.
MAX_SPECTRUM_TILE = 2**16
#: Widest vector load, in bytes.
_VECTOR_BYTES = 16


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
def _rows(B, L, SPECTRA: tl.constexpr, BLOCK_L: tl.constexpr):
    """This program's rows: spectrum within the program, spectrum, position, and in-bounds flag
    (each (SPECTRA * BLOCK_L,))."""
    r = tl.arange(0, SPECTRA * BLOCK_L)
    local = r // BLOCK_L
    s = tl.program_id(0) * SPECTRA + local
    l = r % BLOCK_L
    return local, s, l, (s < B) & (l < L)


@triton.jit
def _active_rows(mask_ptr, stride_mb, stride_ml, s, l, in_bounds):
    """True at real, unmasked positions."""
    return tl.load(mask_ptr + s.to(tl.int64) * stride_mb + l * stride_ml, mask=in_bounds, other=0) != 0


@triton.jit
def _windows(local, l, L, V: tl.constexpr, ALIGN: tl.constexpr, SPECTRA: tl.constexpr, BLOCK_W: tl.constexpr):
    """Where the rows' logits sit in a contiguous (B, L, V) tensor.

    Returns ``base`` (int64 scalar, a multiple of ALIGN), ``offsets`` (rows,
    BLOCK_W) from it, each row's window starting at a multiple of ALIGN, and
    the token index of each element (outside [0, V): a neighbouring row's).
    """
    j = tl.arange(0, BLOCK_W)[None, :]
    first = tl.program_id(0).to(tl.int64) * (SPECTRA * L * V)
    base = first // ALIGN * ALIGN
    start = (first - base).to(tl.int32) + (local * L + l) * V
    shift = start % ALIGN
    offsets = tl.multiple_of(start - shift, ALIGN)[:, None] + j
    return base, offsets, j - shift[:, None]


@triton.jit
def _softmax_rows(
    x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, local, s, l, active, L, N,
    V: tl.constexpr, ALIGN: tl.constexpr, X_CONTIGUOUS: tl.constexpr, COMPUTE: tl.constexpr,
    SPECTRA: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Probabilities p (rows, BLOCK_W), token masses m (same shape, 0 off the row), E = sum_v p m (rows,),
    and the contiguous-layout (base, offsets, token) of :func:`_windows`.

    Masked positions are not read (their logits may be anything); they get a
    uniform softmax that the callers zero out. ``X_CONTIGUOUS`` False: any
    strides, ALIGN must be 1.
    """
    base, offsets, token = _windows(local, l, L, V, ALIGN, SPECTRA, BLOCK_W)
    on_row = (token >= 0) & (token < V)
    if X_CONTIGUOUS:
        # The last row's window may reach past the tensor; N % ALIGN == 0 keeps this mask uniform per vector.
        ptrs = x_ptr + base + offsets
        readable = active[:, None] & (base + offsets < N)
    else:
        ptrs = x_ptr + s.to(tl.int64)[:, None] * stride_xb + l[:, None] * stride_xl + token * stride_xv
        readable = active[:, None] & on_row
    x = tl.load(ptrs, mask=readable, other=0.0).to(COMPUTE)
    x = tl.where(on_row, x, float("-inf"))
    e = tl.exp(x - tl.max(x, axis=1)[:, None])
    p = e * (1.0 / tl.sum(e, axis=1))[:, None]
    m = tl.load(masses_ptr + token * stride_m, mask=on_row, other=0.0).to(COMPUTE)
    return p, m, tl.sum(p * m, axis=1), base, offsets, on_row


@triton.jit
def _position_masses(
    x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m, local, s, l, active, L, N,
    V: tl.constexpr, ALIGN: tl.constexpr, X_CONTIGUOUS: tl.constexpr, FROM_LOGITS: tl.constexpr,
    COMPUTE: tl.constexpr, SPECTRA: tl.constexpr, BLOCK_W: tl.constexpr,
):
    """Mass (rows,) in Da per position, in COMPUTE: E of the logits' softmax, or the given residue
    masses (B, L) read at active positions (0 elsewhere; masked values are not used by the callers)."""
    if FROM_LOGITS:
        _, _, mass, _, _, _ = _softmax_rows(x_ptr, stride_xb, stride_xl, stride_xv, masses_ptr, stride_m,
                                            local, s, l, active, L, N, V, ALIGN, X_CONTIGUOUS, COMPUTE,
                                            SPECTRA, BLOCK_W)
    else:
        mass = tl.load(x_ptr + s.to(tl.int64) * stride_xb + l * stride_xl, mask=active, other=0.0).to(COMPUTE)
    return mass


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


def compute_dtype(x: torch.Tensor):
    """The kernels' compute dtype for input ``x``: float64 for float64, else float32."""
    return tl.float64 if x.dtype == torch.float64 else tl.float32


def prediction_args(x: torch.Tensor, masses: torch.Tensor | None) -> tuple:
    """Pointer/stride arguments of logits (+ masses) or of residue masses (masses None)."""
    if masses is None:
        # No vocabulary: x is read as (B, L); the masses pointer is never dereferenced.
        return (x, x.stride(0), x.stride(1), 0, x, 0)
    if masses.shape[0] < 1:
        raise ValueError("masses must hold at least one token mass")
    return (x, *x.stride(), masses, masses.stride(0))


def window(vocab: int | None, element_size: int, contiguous: bool) -> tuple[int, int]:
    """(BLOCK_W, ALIGN) for rows of ``vocab`` logits of ``element_size`` bytes (``None``: residue masses).

    ALIGN: the widest vector (elements, up to 16 bytes) that keeps every row's
    window within BLOCK_W, the next power of 2 above V; 1 for strided logits.
    A window starts up to ALIGN - gcd(V, ALIGN) elements before its row.
    """
    if vocab is None:
        return 1, 1
    block_w, align = triton.next_power_of_2(vocab), 1
    while (contiguous and 2 * align * element_size <= _VECTOR_BYTES
           and vocab + 2 * align - math.gcd(vocab, 2 * align) <= block_w):
        align *= 2
    return block_w, align


def check_tile(block_l: int, block_w: int, length: int, vocab: int | None, loss: str) -> None:
    if block_l * block_w > MAX_SPECTRUM_TILE:
        raise ValueError(
            f"the Triton {loss} kernel takes L * V up to {MAX_SPECTRUM_TILE} (padded to powers of 2), "
            f"got L={length}, V={vocab}; use backend='reference'"
        )


def row_config(batch: int, length: int, vocab: int | None, *, element_size: int = 4, contiguous: bool = True,
               tile_elements: int = TILE_ELEMENTS, num_warps: int | None = None, loss: str = "precursor") -> dict:
    """Row tile for (B, L, V) logits of ``element_size`` bytes (``vocab=None``: residue masses (B, L)).

    ``tile_elements`` and ``num_warps`` override the tuned defaults (benchmarks).
    """
    # Sizes are symbolic while torch.compile traces with dynamic shapes; block sizes are
    # compile-time constants anyway, and bit tricks on symbols make sympy crawl: specialise.
    batch, length, vocab = int(batch), int(length), None if vocab is None else int(vocab)
    block_l = triton.next_power_of_2(max(length, 1))
    block_w, align = window(vocab, element_size, contiguous)
    check_tile(block_l, block_w, length, vocab, loss)
    spectra = max(1, min(tile_elements // (block_l * block_w), triton.next_power_of_2(max(batch, 1))))
    if num_warps is None:
        num_warps = max(1, min(8, spectra * block_l * block_w // 512))
    return dict(SPECTRA=spectra, BLOCK_L=block_l, BLOCK_W=block_w, ALIGN=align, num_warps=num_warps)


def fit_to(x: torch.Tensor, config: dict) -> dict:
    """A copy of ``config`` that is valid for ``x``: windows need contiguous logits (ALIGN 1 otherwise)."""
    return dict(config, ALIGN=config["ALIGN"] if x.is_contiguous() else 1)


_DEFAULT_CONFIGS: dict = {}


def cached_config(make, *key) -> dict:
    """``make(*key)``, computed once per key: launch configurations are pure functions of
    sizes and dtypes, and computing one costs more host time than a lookup. Read-only."""
    found = _DEFAULT_CONFIGS.get((make, *key))
    if found is None:
        found = _DEFAULT_CONFIGS[(make, *key)] = make(*key)
    return found


def x_config(x: torch.Tensor, masses: torch.Tensor | None, config: dict | None, loss: str) -> dict:
    """``config`` (fitted to ``x``) or the default :func:`row_config` for logits / residue masses ``x``."""
    if config is not None:
        return fit_to(x, config)
    # int(): sizes are symbolic while torch.compile traces with dynamic shapes (see row_config).
    vocab = int(x.shape[2]) if masses is not None else None
    return cached_config(_default_row_config, int(x.shape[0]), int(x.shape[1]), vocab, x.element_size(),
                         x.is_contiguous(), loss)


def _default_row_config(batch, length, vocab, element_size, contiguous, loss) -> dict:
    return row_config(batch, length, vocab, element_size=element_size, contiguous=contiguous, loss=loss)


@triton.jit
def _upstream(grad_loss_ptr, stride_g, denominator_ptr, s, in_bounds, DIVIDE: tl.constexpr, COMPUTE: tl.constexpr):
    """The upstream gradient of each row's spectrum, over the mean's denominator when DIVIDE."""
    g = tl.load(grad_loss_ptr + s.to(tl.int64) * stride_g, mask=in_bounds, other=0.0).to(COMPUTE)
    if DIVIDE:
        g = _div(g, tl.load(denominator_ptr).to(COMPUTE))
    return g


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
    grad_mass: torch.Tensor,
    denominator: torch.Tensor | None,
    *,
    config: dict | None,
    loss: str,
    per_position: bool,
    grad_mass_offset: int = 0,
    denominator_index: int = 0,
) -> torch.Tensor:
    """Gradient w.r.t. ``x`` of ``sum_b grad_loss[b] / denominator * loss[b]`` from d loss_b / d (residue mass).

    Both losses depend on the logits only through the expected residue masses,
    so this is their whole backward. Contiguous, in x's dtype.

    Args:
        x, masses, mask: logits (B, L, V) with masses (V,) Da, or residue masses
            (B, L) Da with masses None; the (B, L) bool mask.
        grad_loss: (B,) upstream gradient of the per-spectrum loss (any stride, 0 too), or a 0-dim
            one for every spectrum.
        grad_mass: contiguous d loss_b / d m_l in 1/Da, read from element
            ``grad_mass_offset`` of this tensor on: (B, L) values if ``per_position``,
            else (B,), one per spectrum, the same at each of its positions (precursor).
        denominator: the mean's denominator at element ``denominator_index`` of
            this tensor, or None for 1. (Offsets into the forward's output instead
            of views of it: each view is an operator call of host time per step.)
        config: a :func:`row_config` result, or None for the default.
        loss: the loss's name, for error messages.
    """
    batch, length = x.shape[:2]
    cfg = x_config(x, masses, config, loss)
    grad = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if batch:
        _MASS_BACKWARD[((batch + cfg["SPECTRA"] - 1) // cfg["SPECTRA"],)](
            *prediction_args(x, masses),
            mask, mask.stride(0), mask.stride(1),
            # A 0-dim upstream gradient (of a "sum" or "mean") is every spectrum's: stride 0.
            grad_loss, grad_loss.stride(0) if grad_loss.ndim else 0,
            grad_loss if denominator is None else denominator, denominator_index,
            grad_mass, grad_mass_offset, grad,
            batch, length, x.numel(), V=x.shape[2] if masses is not None else 1,
            X_CONTIGUOUS=x.is_contiguous(), DIVIDE=denominator is not None, PER_POSITION=per_position,
            FROM_LOGITS=masses is not None, COMPUTE=compute_dtype(x), enable_fp_fusion=False, **cfg,
        )
    return grad


_MASS_BACKWARD = LeanKernel(_mass_backward_kernel)
