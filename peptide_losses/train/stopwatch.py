"""Where a step's time goes, measured without making the host wait for the GPU.

On a CUDA device each lap is a pair of CUDA events, read only when the
interval's numbers are asked for (a logging step, which reads the device
anyway); on the CPU, where work is synchronous, laps are wall-clock times.
"""

from __future__ import annotations

import time

import torch


class Stopwatch:
    """Sums the time of named laps ("data", "compute") over the steps of an interval.

    Call :meth:`start` at the top of a step and :meth:`lap` after each part;
    :meth:`pop` returns ``{"<lap>_ms": mean ms per step, "steps_per_s": ...}``
    for the steps since the last pop and starts a new interval.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._laps: list[tuple[str, object, object]] = []
        self._mark = None
        self._steps = 0
        self._since = time.perf_counter()

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def start(self) -> None:
        self._mark = self._now()
        self._steps += 1

    def lap(self, name: str) -> None:
        now = self._now()
        self._laps.append((name, self._mark, now))
        self._mark = now

    def pop(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        if self.cuda and self._laps:
            self._laps[-1][2].synchronize()
        for name, begin, end in self._laps:
            ms = begin.elapsed_time(end) if self.cuda else (end - begin) * 1e3
            totals[name] = totals.get(name, 0.0) + ms
        now = time.perf_counter()
        steps = max(self._steps, 1)
        out = {f"{name}_ms": total / steps for name, total in totals.items()}
        out["steps_per_s"] = self._steps / max(now - self._since, 1e-9)
        self._laps, self._steps, self._since = [], 0, now
        return out
