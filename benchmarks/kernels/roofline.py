"""Roofline floors: the least time any implementation of a loss could take on this device.

Two rates are measured on the device itself, not taken from a datasheet:

- HBM bandwidth: a large device-to-device copy (1 GiB, twenty times any L2),
  bytes read + bytes written over the median time.
- fp32 rate: a Triton kernel in which every element runs long chains of
  independent ``x = x * a + b`` in registers (no memory traffic), counted as
  FMAs per second (one FMA = one instruction = 2 flops in vendor specs). If that
  kernel cannot run, an fp32 matrix product with TF32 off (n^3 FMAs) stands in.

A loss's floor for a mode is ``max(bytes / bandwidth, ops / fp32 rate)``:

- bytes: the logits read once in their dtype, the position mask, the token
  masses, the per-spectrum inputs (spectrum: observed m/z fp32, intensity fp32,
  peak mask bool; precursor: m/z float64, charge int64) read once, and the
  gradient written in the logits' dtype. Forward reads the inputs; backward
  reads logits and mask and writes the gradient (what it needs from the forward
  is O(B * L), neglected); forward+backward reads once and writes the gradient.
- ops (spectrum loss only): one nearest-ion search is B * N * M peak-ion pairs
  at ``OPS_PER_PAIR`` fp32 instructions each (subtract, compare, select; |x| is
  a free operand modifier). The precursor loss's arithmetic is negligible.

Padded sizes count in full: ragged padding is read (masks) even when skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .grid import Case
from .timing import TimingSettings, time_step

MODES = ("forward", "backward", "fwd+bwd")

#: fp32 instructions per observed-peak / theoretical-ion pair of the search.
OPS_PER_PAIR = 3
#: Searches per mode: the backward needs each peak's nearest ion again; the
#: spectrum kernels recompute it rather than keep a (B, N) index, so it counts.
SEARCHES = {"forward": 1, "backward": 1, "fwd+bwd": 2}

MASS_BYTES = 8  # token masses, float64 (Vocabulary.mass_tensor)
BOOL_BYTES = 1
PEAK_BYTES = 4 + 4 + BOOL_BYTES  # m/z fp32, intensity fp32, peak mask
PRECURSOR_BYTES = 8 + 8  # precursor m/z float64, charge int64


@dataclass(frozen=True)
class DeviceRates:
    """Measured rates of the device: bytes/s of a copy (read + write) and fp32 FMAs/s."""

    copy_bytes_per_s: float
    fp32_ops_per_s: float
    fp32_method: str


def logits_bytes(case: Case) -> int:
    return case.batch * case.length * case.vocab * case.torch_dtype.itemsize


def input_bytes(case: Case) -> int:
    """Bytes every forward must read once: logits, mask, masses and per-spectrum data."""
    shared = logits_bytes(case) + case.batch * case.length * BOOL_BYTES + case.vocab * MASS_BYTES
    if case.loss == "spectrum":
        return shared + case.batch * case.n_peaks * PEAK_BYTES
    return shared + case.batch * PRECURSOR_BYTES


def floor_bytes(case: Case, mode: str) -> int:
    """Fewest bytes the mode must move through HBM (see the module docstring)."""
    gradient = logits_bytes(case)
    if mode == "forward":
        return input_bytes(case)
    if mode == "backward":
        return logits_bytes(case) + case.batch * case.length * BOOL_BYTES + case.vocab * MASS_BYTES + gradient
    if mode == "fwd+bwd":
        return input_bytes(case) + gradient
    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def floor_ops(case: Case, mode: str) -> int:
    """fp32 instructions of the nearest-ion searches (0 for the precursor loss)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if case.loss != "spectrum":
        return 0
    return SEARCHES[mode] * case.batch * case.n_peaks * case.n_ions * OPS_PER_PAIR


def floor_seconds(case: Case, mode: str, rates: DeviceRates) -> float:
    """The roofline: the slower of moving the bytes and doing the search work."""
    return max(floor_bytes(case, mode) / rates.copy_bytes_per_s, floor_ops(case, mode) / rates.fp32_ops_per_s)


# ---------------------------------------------------------------- measurement
_RATE_SETTINGS = TimingSettings(warmup=2, min_iters=10, max_iters=10)


def measure_copy_bandwidth(device: torch.device) -> float:
    """Bytes per second (read + written) of a large device-to-device copy."""
    nbytes = (1024 if device.type == "cuda" else 32) * 2**20
    src = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_step(lambda i: None, lambda _: dst.copy_(src), device, _RATE_SETTINGS)
    return 2 * nbytes / (timing.median_ms * 1e-3)


def _triton_fma_rate(device: torch.device) -> float:
    """FMAs per second of a register-only Triton FMA loop (CUDA only)."""
    from .fma_kernel import fma_chains

    n, iters, block = 2**24, 512, 1024
    x = torch.rand(n, device=device)
    out = torch.empty_like(x)

    def launch(_):
        fma_chains[(n // block,)](x, out, 0.999, 1e-3, ITERS=iters, BLOCK=block)

    timing = time_step(lambda i: None, launch, device, _RATE_SETTINGS)
    if not torch.isfinite(out).all():
        raise RuntimeError("the FMA kernel produced non-finite values")
    return 2 * n * iters / (timing.median_ms * 1e-3)


def _matmul_fma_rate(device: torch.device) -> float:
    """FMAs per second of an fp32 matrix product with TF32 off (n^3 FMAs)."""
    n = 8192 if device.type == "cuda" else 256
    a = torch.rand(n, n, device=device)
    b = torch.rand(n, n, device=device)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        timing = time_step(lambda i: None, lambda _: a @ b, device, _RATE_SETTINGS)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return n**3 / (timing.median_ms * 1e-3)


def measure_fp32_rate(device: torch.device) -> tuple[float, str]:
    """(FMAs per second, how it was measured)."""
    if device.type == "cuda":
        try:
            return _triton_fma_rate(device), "Triton register FMA loop"
        except Exception as exc:  # noqa: BLE001 - any failure falls back to the matmul measure
            method = f"fp32 matmul, TF32 off (Triton FMA loop failed: {type(exc).__name__})"
            return _matmul_fma_rate(device), method
    return _matmul_fma_rate(device), "fp32 matmul (host clock)"


def measure_rates(device: torch.device) -> DeviceRates:
    copy = measure_copy_bandwidth(device)
    fp32, method = measure_fp32_rate(device)
    return DeviceRates(copy, fp32, method)
