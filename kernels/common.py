"""Pieces both losses' kernels share: exact arithmetic, the bad-value flags, the row tile over
(B, L) positions, the softmax expectation over aligned windows of V, launch configurations, and
the sum or mean over spectra that the forward kernels compute themselves.

The row tile: a program handles ``SPECTRA`` whole spectra as ``SPECTRA * BLOCK_L``
rows (one per position, flattened spectrum-major), each row a window of
``BLOCK_W`` logits. Per-row sums over V stay on chip, per-spectrum sums are
reductions over a reshaped (SPECTRA, BLOCK_L) view, never atomic additions of values,
so results are bitwise reproducible. (The one atomic, the forward kernels' ticket counter
below, decides only which program sums the spectra, not the order it sums them in.)

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

import functools
import math

import torch
import triton
import triton.language as tl


#: Tile elements (rows x window) one program aims at; the sweep that chose it is in
#: benchmarks/NOTES.md ("Launch parameters").
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
def _f64(value):
    """A float64 scalar holding a Python float exactly (constexpr floats become float32)."""
    return tl.full((), value, tl.float64)


# Bad values: each spectrum with one gets a NaN loss and NaN d loss / d mass, so that nothing
# needs a host sync and no bad value comes out finite (the rule: peptide_losses.checks).
@triton.jit
def _finite(x):
    """Neither NaN nor +-inf."""
    return tl.abs(x) < float("inf")


@triton.jit
def _positive_finite(x):
    """Finite and > 0 (False for NaN)."""
    return (x > 0) & (x < float("inf"))


@triton.jit
def _nan_where(bad, value):
    return tl.where(bad, float("nan"), value)


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


@functools.lru_cache(maxsize=1024)
def cached_config(make, *key) -> dict:
    """``make(*key)``, computed once per key (the last 1,024 kept): launch configurations are pure
    functions of sizes and dtypes, and computing one costs more host time than a lookup. Read-only."""
    return make(*key)


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


# The mean or sum over spectra inside a loss's forward kernel (reference.reduce_spectra).
# A separate reduction kernel costs an eager call one more launch (host time
# larger than the work on a slow host) and a graph replay one more kernel. So the
# forward kernels reduce their own rows: each program, after writing its
# spectra's rows, takes a ticket from a counter; the program that takes the last
# ticket sums every row in a fixed order (bitwise reproducible: the order of the
# tickets decides only which program sums, never how) and sets the counter back
# to 0 for the next call. Orders: a CTA barrier, then an acq_rel atomic at GPU
# scope (the pattern of Inductor's grid barrier), then volatile loads of the
# rows (never cached in the summing program's L1).
#
# The counter is one int32 per (device, stream), allocated once and zero
# between calls: calls on one stream run one after another. Two CUDA graphs
# captured on one capture stream share its counter, so their replays must not
# run concurrently on different streams.

#: Reduction modes of the forward kernels' REDUCE argument.
REDUCE_MODES = {"none": 0, "sum": 1, "mean": 2}
#: Spectra one pass of the summing program reads.
_BLOCK = tl.constexpr(1024)

# Never dropped, unlike the other caches: a CUDA graph captured on a stream holds its counter's
# address, and a freed counter would let its replays write into whatever reuses the memory. The
# cost is 4 bytes of GPU memory per stream that ever ran a loss.
_counters: dict[tuple, torch.Tensor] = {}


def counter(device: torch.device) -> torch.Tensor:
    """The ticket counter of the current stream on ``device`` (one int32, zero between calls)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        key = (index, torch._C._cuda_getCurrentRawStream(index))
    else:
        key = (device.type, device.index)
    found = _counters.get(key)
    if found is None:
        found = _counters[key] = torch.zeros(1, dtype=torch.int32, device=device)
    return found


def reduce_nothing(out: torch.Tensor) -> None:
    """No spectrum (B = 0, no launch): ``out`` = loss 0 and denominator 1, as the reference."""
    out[-2:].fill_(0.0)
    out[-1:].fill_(1.0)


@triton.jit
def _reduce_rows(loss_ptr, counted_ptr, out_ptr, counter_ptr, B, MEAN: tl.constexpr):
    """Called by every program after its rows are stored: the last one writes
    ``out[0]`` = the sum (or mean over ``counted``) of ``loss[0:B]`` and, for the mean,
    ``out[1]`` = its denominator (at least 1)."""
    tl.debug_barrier()  # every thread's row stores precede the release below
    ticket = tl.atomic_add(counter_ptr, 1, sem="acq_rel")
    if ticket == tl.num_programs(0) - 1:
        tl.debug_barrier()
        total = tl.zeros([_BLOCK], out_ptr.dtype.element_ty)
        count = tl.zeros([_BLOCK], out_ptr.dtype.element_ty)
        for start in range(0, B, _BLOCK):
            i = start + tl.arange(0, _BLOCK)
            total += tl.load(loss_ptr + i, mask=i < B, other=0.0, volatile=True)
            if MEAN:
                count += tl.load(counted_ptr + i, mask=i < B, other=0.0, volatile=True)
        total_sum = tl.sum(total, axis=0)
        if MEAN:
            denominator = tl.maximum(tl.sum(count, axis=0), 1.0)
            tl.store(out_ptr, _div(total_sum, denominator))
            tl.store(out_ptr + 1, denominator)
        else:
            tl.store(out_ptr, total_sum)
        tl.atomic_xchg(counter_ptr, 0)
