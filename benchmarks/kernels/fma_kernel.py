"""A Triton kernel that only does fp32 FMAs in registers: the device's fp32 rate.

Imported lazily (it needs Triton) by :mod:`benchmarks.kernels.roofline`.
"""

import triton
import triton.language as tl


@triton.jit
def fma_chains(x_ptr, out_ptr, a, b, ITERS: tl.constexpr, BLOCK: tl.constexpr):
    """Each element runs two independent chains of ITERS ``x = x * a + b``: 2 * ITERS FMAs."""
    offsets = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offsets)
    y = x + 1.0
    for _ in range(ITERS):
        x = x * a + b
        y = y * a + b
    tl.store(out_ptr + offsets, x + y)
