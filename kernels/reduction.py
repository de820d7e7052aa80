"""The mean or sum over spectra inside a loss's forward kernel: :func:`peptide_losses.reference.reduce_spectra`.

A separate reduction kernel costs an eager call one more launch (host time
larger than the work on a slow host) and a graph replay one more kernel. So the
forward kernels reduce their own rows: each program, after writing its
spectra's rows, takes a ticket from a counter; the program that takes the last
ticket sums every row in a fixed order (bitwise reproducible: the order of the
tickets decides only which program sums, never how) and sets the counter back
to 0 for the next call. Orders: a CTA barrier, then an acq_rel atomic at GPU
scope (the pattern of Inductor's grid barrier), then volatile loads of the
rows (never cached in the summing program's L1).

The counter is one int32 per (device, stream), allocated once and zero
between calls: calls on one stream run one after another. Two CUDA graphs
captured on one capture stream share its counter, so their replays must not
run concurrently on different streams.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from peptide_losses.kernels.common import _div

#: Reduction modes of the forward kernels' REDUCE argument.
REDUCE_MODES = {"none": 0, "sum": 1, "mean": 2}
#: Spectra one pass of the summing program reads.
_BLOCK = tl.constexpr(1024)

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
