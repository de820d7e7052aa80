"""End to end: one training step of the slim trainer with our losses against the reference's.

Needs ``peptide_losses.train.make_train_step(device=..., backend=..., batch_size=...)``
returning a no-argument callable that runs one whole optimisation step (model
forward, every loss, backward, optimiser step) on a fixed batch. Until the
trainer provides it, the rows say ``not run`` with the reason.
"""

from __future__ import annotations

import torch

from .measure import failure_status, release_memory
from .report import TRAIN_STEP
from .timing import L2Flush, TimingSettings, peak_extra_memory, time_step

BATCH_SIZE = 256
#: Implementation column of the rows -> the losses' backend in the trainer.
BACKENDS = {"triton": "triton", "eager": "reference"}


def measure_train_step(device: torch.device, settings: TimingSettings, flush: L2Flush,
                       batch_size: int = BATCH_SIZE) -> list[dict]:
    """One row per backend: median ms of a training step and its peak extra memory."""
    rows = []
    for impl, backend in BACKENDS.items():
        row = {"loss": TRAIN_STEP, "impl": impl, "mode": "train step", "B": batch_size, "status": "ok"}
        try:
            from peptide_losses.train import make_train_step
        except ImportError as exc:
            row["status"] = f"not run: trainer not available ({exc})"
            rows.append(row)
            continue
        failure = None
        try:
            step = make_train_step(device=device, backend=backend, batch_size=batch_size)
            timing = time_step(lambda i: None, lambda _: step(), device, settings, flush)
            peak = peak_extra_memory(lambda i: None, lambda _: step(), device)
            row.update(ms=timing.median_ms, ms_p20=timing.p20_ms, ms_p80=timing.p80_ms, iters=timing.iters,
                       peak_extra_mib="" if peak is None else peak / 2**20)
        except Exception as exc:  # noqa: BLE001 - recorded in the row
            failure = failure_status(exc)
        if failure:
            row["status"] = failure
            release_memory(device)
        rows.append(row)
    return rows
