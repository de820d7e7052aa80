"""Measure one implementation on one case in every mode: time, peak memory, roofline.

Modes, all from logits with ``requires_grad`` (as in training):

- ``forward``: the loss alone (autograd records what backward needs).
- ``backward``: ``torch.autograd.grad(loss, logits)`` alone. The forward is
  re-run before each call, outside the timed region, so the L2 holds what a
  forward leaves behind, as in a training step.
- ``fwd+bwd``: loss then gradient, both timed.
- ``fwd+bwd graph``: the same captured once in a CUDA graph (on the first input
  set) and replayed, the L2 flushed before each replay: the device time of the
  step without the host's launch cost, which dominates small losses' latency
  on a slow host. Replays allocate nothing, so this mode has no memory column.

A failure in one mode becomes that row's status (out of memory: ``skipped``;
anything else: ``failed``) and the other modes still run.
"""

from __future__ import annotations

import gc
import math
from dataclasses import replace
from typing import Any, Callable

import torch

from benchmarks.support.step_variants import capture_graph
from benchmarks.support.synthetic import LossBatch, make_batch

from . import implementations
from .grid import Case
from .roofline import DeviceRates, floor_bytes, floor_ops, floor_seconds, input_bytes
from .timing import L2Flush, Timing, TimingSettings, peak_extra_memory, time_step

#: Inputs are rotated among copies whose total size is at least this (or 8 copies),
#: so a call rarely finds its inputs in the L2 even before the flush.
ROTATION_BYTES = 256 * 2**20
MAX_SETS = 8
MIB = 2**20


def input_sets(case: Case, device: torch.device) -> list[LossBatch]:
    """Copies of one random batch at distinct addresses, logits requiring grad."""
    first = make_batch(case.batch, case.length, case.n_peaks, vocab_size=case.vocab,
                       dtype=case.torch_dtype, device=device, seed=0)
    count = max(2, min(MAX_SETS, math.ceil(ROTATION_BYTES / input_bytes(case))))
    sets = []
    for _ in range(count):
        fields = {name: value.clone() for name, value in vars(first).items()}
        fields["logits"].requires_grad_(True)
        sets.append(replace(first, **fields))
    return sets


def mode_step(mode: str, loss_fn, sets: list[LossBatch]) -> tuple[Callable[[int], Any], Callable[[Any], Any]]:
    """``(prepare, timed)`` of :func:`benchmarks.kernels.timing.time_step` for one mode."""
    def pick(i: int) -> LossBatch:
        return sets[i % len(sets)]

    if mode == "forward":
        return pick, loss_fn
    if mode == "fwd+bwd":
        return pick, lambda batch: torch.autograd.grad(loss_fn(batch), batch.logits)
    if mode == implementations.GRAPH_MODE:
        graph, _ = capture_graph(lambda: torch.autograd.grad(loss_fn(sets[0]), sets[0].logits))
        return (lambda i: graph), (lambda g: g.replay())
    if mode == "backward":
        def forward(i: int):
            batch = pick(i)
            return loss_fn(batch), batch.logits
        return forward, lambda state: torch.autograd.grad(*state)
    raise ValueError(f"unknown mode {mode!r}")


def too_large(impl: str, case: Case, device: torch.device) -> str | None:
    """Why the reference cannot fit at all (its (B, N, M) distances exceed the device), else None."""
    if impl not in ("eager", "compile") or case.loss != "spectrum" or device.type != "cuda":
        return None
    needed = case.batch * case.n_peaks * case.n_ions * 4
    total = torch.cuda.get_device_properties(device).total_memory
    if needed > total:
        return (f"skipped: the (B, N, M) fp32 distances alone need {needed / 2**30:.1f} GiB, "
                f"more than the device's {total / 2**30:.1f} GiB")
    return None


def failure_status(exc: BaseException) -> str:
    """One line: ``skipped: out of memory (...)``, ``not run: <why>`` (NotRun, a missing import)
    or ``failed: <type>: <message>``."""
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"skipped: out of memory ({text})" if text else "skipped: out of memory"
    if isinstance(exc, (ImportError, implementations.NotRun)):
        return f"not run: {text}"
    return f"failed: {type(exc).__name__}: {text}"


def release_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def attempt(work: Callable[[], None], device: torch.device) -> str | None:
    """Run ``work``; None if it succeeded, else its :func:`failure_status` (memory released)."""
    try:
        work()
        return None
    except Exception as exc:  # noqa: BLE001 - becomes the row's status, the grid goes on
        failure = failure_status(exc)
    # Outside the except block, whose traceback still holds the failed call's tensors.
    release_memory(device)
    return failure


def case_fields(case: Case) -> dict:
    """The CSV fields that name a case."""
    spectrum = case.loss == "spectrum"
    return {
        "loss": case.loss, "B": case.batch, "L": case.length, "V": case.vocab,
        "N": case.n_peaks if spectrum else "", "M": case.n_ions if spectrum else "",
        "ions": "".join(case.ion_types), "charges": "-".join(map(str, case.charges)), "dtype": case.dtype,
    }


def timing_fields(timing: Timing, peak_bytes: int | None) -> dict:
    return {"ms": timing.median_ms, "ms_p20": timing.p20_ms, "ms_p80": timing.p80_ms, "iters": timing.iters,
            "peak_extra_mib": "" if peak_bytes is None else peak_bytes / MIB}


def roofline_fields(case: Case, mode: str, rates: DeviceRates, median_ms: float | None) -> dict:
    if mode == implementations.GRAPH_MODE:
        mode = "fwd+bwd"  # the same work, launched differently
    floor_ms = floor_seconds(case, mode, rates) * 1e3
    return {
        "floor_bytes": floor_bytes(case, mode), "floor_ops": floor_ops(case, mode), "floor_ms": floor_ms,
        "vs_floor": median_ms / floor_ms if median_ms is not None else "",
    }


def measure(
    impl: str, case: Case, sets: list[LossBatch], rates: DeviceRates,
    settings: TimingSettings, flush: L2Flush,
) -> list[dict]:
    """One row per mode of ``impl`` on ``case``: status, timing, memory, roofline."""
    device = sets[0].logits.device
    modes = implementations.modes(impl, device)
    built = {}
    status = too_large(impl, case, device) or attempt(
        lambda: built.setdefault("loss_fn", implementations.build(impl, case, sets)), device)
    loss_fn = built.get("loss_fn")
    rows = []
    for mode in modes:
        row = {**case_fields(case), "impl": impl, "mode": mode, "status": status or "ok"}
        if loss_fn is not None:
            def work():
                prepare, timed = mode_step(mode, loss_fn, sets)
                timing = time_step(prepare, timed, device, settings, flush)
                graph = mode == implementations.GRAPH_MODE
                peak = None if graph else peak_extra_memory(prepare, timed, device)
                row.update(timing_fields(timing, peak))
                if mode == "forward" and impl != "keops":
                    # With grad on, as timed: no_grad would make torch.compile recompile.
                    row["loss_value"] = float(loss_fn(sets[0]).detach())

            row["status"] = attempt(work, device) or "ok"
        row.update(roofline_fields(case, mode, rates, row.get("ms")))
        rows.append(row)
    return rows
