"""Timing and peak-memory measurement of one benchmark step.

A step is split into an untimed ``prepare(i)`` (pick input set ``i``; for the
backward mode, also run the forward) and the timed ``timed(state)``. Before
every timed call the L2 cache is flushed and the device synchronised, outside
the timed region, so each call starts from an idle GPU with cold caches: the
time is the latency of one call, CPU launch gaps included (what a training step
waits for), not the throughput of calls queued back to back.

On CUDA the time comes from CUDA events around the call; on the CPU (smoke runs)
from the host clock.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

#: Bytes overwritten to flush the L2 when the device does not report its size
#: (twice the H100's 50 MB L2).
DEFAULT_FLUSH_BYTES = 100 * 2**20


@dataclass(frozen=True)
class TimingSettings:
    """How many calls: ``warmup`` untimed (compilation, autotuning), then enough
    timed calls to fill ``target_seconds``, clamped to [min_iters, max_iters]."""

    warmup: int = 3
    min_iters: int = 10
    max_iters: int = 100
    target_seconds: float = 0.25

    def iterations(self, seconds_per_call: float) -> int:
        wanted = int(self.target_seconds / max(seconds_per_call, 1e-9))
        return max(self.min_iters, min(self.max_iters, wanted))


CUDA_SETTINGS = TimingSettings()
#: Host-clock smoke runs on the CPU (interpreted kernels are slow): a few calls only.
CPU_SETTINGS = TimingSettings(warmup=1, min_iters=3, max_iters=5, target_seconds=0.5)


def settings_for(device: torch.device) -> TimingSettings:
    return CUDA_SETTINGS if device.type == "cuda" else CPU_SETTINGS


@dataclass(frozen=True)
class Timing:
    """Milliseconds per call over ``iters`` timed calls: median and the 20th/80th percentiles."""

    median_ms: float
    p20_ms: float
    p80_ms: float
    iters: int


def summarize(samples_ms: list[float]) -> Timing:
    if not samples_ms:
        raise ValueError("samples_ms is empty: nothing was timed")
    if len(samples_ms) == 1:
        return Timing(samples_ms[0], samples_ms[0], samples_ms[0], 1)
    q = statistics.quantiles(samples_ms, n=5, method="inclusive")
    return Timing(statistics.median(samples_ms), q[0], q[-1], len(samples_ms))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Times a region per call: CUDA events on a GPU, the host clock on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self._open: Any = None
        self._spans: list[tuple[Any, Any]] = []

    def start(self) -> None:
        if self.device.type == "cuda":
            self._open = torch.cuda.Event(enable_timing=True)
            self._open.record()
        else:
            self._open = time.perf_counter()

    def stop(self) -> None:
        if self.device.type == "cuda":
            end = torch.cuda.Event(enable_timing=True)
            end.record()
        else:
            end = time.perf_counter()
        self._spans.append((self._open, end))
        self._open = None

    def samples_ms(self) -> list[float]:
        """Milliseconds of every span so far (synchronises the device once)."""
        synchronize(self.device)
        if self.device.type == "cuda":
            return [start.elapsed_time(end) for start, end in self._spans]
        return [(end - start) * 1e3 for start, end in self._spans]


class L2Flush:
    """Overwrites a buffer twice the L2's size so no input stays cached (a no-op on the CPU)."""

    def __init__(self, device: torch.device):
        self.buffer = None
        if device.type == "cuda":
            l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0)
            size = 2 * l2 if l2 else DEFAULT_FLUSH_BYTES
            self.buffer = torch.empty(size, dtype=torch.uint8, device=device)

    def __call__(self) -> None:
        if self.buffer is not None:
            self.buffer.zero_()


def time_step(
    prepare: Callable[[int], Any],
    timed: Callable[[Any], Any],
    device: torch.device,
    settings: TimingSettings,
    flush: Callable[[], None] | None = None,
) -> Timing:
    """Median latency of ``timed(prepare(i))`` over rotating ``i``, after warm-up.

    ``prepare(i)`` runs untimed before call ``i`` (after ``flush()``, e.g. an
    :class:`L2Flush`); only ``timed`` is inside the measured region.
    """
    return time_interleaved({"step": (prepare, timed)}, device, settings, flush)["step"]


def time_interleaved(
    steps: dict[str, tuple[Callable[[int], Any], Callable[[Any], Any]]],
    device: torch.device,
    settings: TimingSettings,
    flush: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """:func:`time_step` of several ``(prepare, timed)`` steps, taking turns call by call.

    A slow host's speed drifts by tens of percent within seconds (the H200
    machine's floor measured 0.08-0.17 ms in one minute): steps timed one
    after the other compare host states as much as code, steps timed in turns
    see the same host, so ratios of their medians are paired.
    """
    seconds_per_round = 0.0
    for i in range(settings.warmup):
        began = time.perf_counter()
        for prepare, timed in steps.values():
            state = prepare(i)
            synchronize(device)
            timed(state)
            synchronize(device)
            del state  # before the next prepare: two forward graphs alive at once could run out of memory
        seconds_per_round = time.perf_counter() - began
    watches = {name: Stopwatch(device) for name in steps}
    for i in range(settings.iterations(seconds_per_round)):
        for name, (prepare, timed) in steps.items():
            if flush is not None:
                flush()
            state = prepare(i)
            synchronize(device)
            watches[name].start()
            out = timed(state)
            watches[name].stop()  # before `out` is freed, so freeing the graph is not timed
            del out, state
    return {name: summarize(watch.samples_ms()) for name, watch in watches.items()}


def floor_step(device: torch.device) -> tuple[Callable[[int], Any], Callable[[Any], Any]]:
    """The host floor (:func:`host_floor_ms`) as a ``(prepare, timed)`` step for :func:`time_interleaved`."""
    x = torch.ones(1, device=device, requires_grad=True)
    return (lambda i: x), (lambda t: torch.autograd.grad(t.sum(), t))


def host_floor_ms(device: torch.device, settings: TimingSettings) -> float:
    """Median latency of the smallest autograd step, ``grad(x.sum(), x)`` on one element.

    No loss's ``fwd+bwd`` latency can go below it: it is the host's cost of a
    forward op, the autograd engine and a backward op, which on a slow host is
    larger than the device time of a whole fused loss.
    """
    return time_step(*floor_step(device), device, settings).median_ms


def peak_extra_memory(prepare: Callable[[int], Any], timed: Callable[[Any], Any], device: torch.device) -> int | None:
    """Bytes allocated by one ``timed`` call beyond what existed before it; None off CUDA.

    The baseline is taken after ``prepare`` (inputs, and for the backward mode the
    forward's saved tensors), so only what the timed region adds counts.
    """
    if device.type != "cuda":
        return None
    state = prepare(0)
    synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    timed(state)
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) - baseline
