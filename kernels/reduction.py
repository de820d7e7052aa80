"""The reduction of per-spectrum losses in one launch: :func:`peptide_losses.reference.reduce_spectra`.

torch's version is four small kernels (two sums, the clamp, the division); in
an eager call each costs a launch and a few microseconds of device time, as much
as the precursor loss's own kernels at B = 4096. One program sums in a fixed
order, so the result is bitwise reproducible.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from peptide_losses.kernels.common import _div

#: Spectra one pass of the program reads (B up to this: one pass).
_MAX_BLOCK = 16384


@triton.jit
def _reduce_kernel(loss_ptr, stride_l, counted_ptr, stride_c, out_ptr, B, MEAN: tl.constexpr, BLOCK: tl.constexpr):
    total = tl.zeros([BLOCK], out_ptr.dtype.element_ty)
    count = tl.zeros([BLOCK], out_ptr.dtype.element_ty)
    for start in range(0, B, BLOCK):
        i = start + tl.arange(0, BLOCK)
        total += tl.load(loss_ptr + i * stride_l, mask=i < B, other=0.0)
        if MEAN:
            count += tl.load(counted_ptr + i * stride_c, mask=i < B, other=0.0)
    total_sum = tl.sum(total, axis=0)
    if MEAN:
        denominator = tl.maximum(tl.sum(count, axis=0), 1.0)
        tl.store(out_ptr, _div(total_sum, denominator))
        tl.store(out_ptr + 1, denominator)
    else:
        tl.store(out_ptr, total_sum)


def reduce_spectra(
    per_spectrum: torch.Tensor, counted: torch.Tensor, reduction: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reduced loss and, for ``"mean"``, its denominator (0-dim tensors), as the reference's.

    Args:
        per_spectrum: (B,) float32 or float64 losses (0 where a spectrum does not count).
        counted: (B,) same dtype, 1.0 where the spectrum counts, else 0.0.
        reduction: ``"mean"`` (over counted spectra, 0 if none), ``"sum"`` or ``"none"``.
    """
    if reduction == "none":
        return per_spectrum, None
    batch = per_spectrum.shape[0]
    out = torch.empty(2, dtype=per_spectrum.dtype, device=per_spectrum.device)
    block = min(triton.next_power_of_2(max(batch, 1)), _MAX_BLOCK)
    mean = reduction == "mean"
    _reduce_kernel[(1,)](per_spectrum, per_spectrum.stride(0), counted, counted.stride(0), out, batch,
                         MEAN=mean, BLOCK=block, num_warps=max(1, min(32, block // 512)))
    return out[0], out[1] if mean else None
