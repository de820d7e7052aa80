"""End to end: one training step of the slim trainer with our losses against the reference's.

The step is the trainer's (``peptide_losses.train.trainer.training_step``): its
default configuration and model, its objective (CE plus both mass losses, on),
AdamW with gradient clipping, on a fixed batch of its simulated spectra; only
the mass losses' backend differs between the rows. When the trainer's pieces
do not import, the rows say ``not run`` with the reason.
"""

from __future__ import annotations

import torch

from .measure import attempt, timing_fields
from .report import TRAIN_STEP
from .timing import L2Flush, TimingSettings, peak_extra_memory, time_step

BATCH_SIZE = 256
#: Implementation column of the rows -> the losses' backend in the trainer.
BACKENDS = {"triton": "triton", "eager": "reference"}
#: Both mass losses on (the seed's last-stage weights): the step pays for them whatever the weights' value.
WEIGHTS = {"ce": 1.0, "spectrum": 0.15, "precursor": 0.10}


def make_train_step(device: torch.device, backend: str, batch_size: int):
    """A no-argument callable running one optimisation step of the trainer on a fixed batch."""
    from peptide_losses.train.config import load_config
    from peptide_losses.train.data import training_data
    from peptide_losses.train.trainer import build, training_step
    from peptide_losses.vocabulary import Vocabulary

    config = load_config(overrides={"backend": backend, "batch_size": batch_size, "device": str(device)})
    vocabulary = Vocabulary.default()
    batch = training_data(config, vocabulary, device).batch(0)
    model, objective = build(config, vocabulary, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr,
                                  weight_decay=config.optimizer.weight_decay)

    def step() -> None:
        training_step(model, objective, optimizer, batch, WEIGHTS, config)

    return step


def measure_train_step(device: torch.device, settings: TimingSettings, flush: L2Flush,
                       batch_size: int = BATCH_SIZE) -> list[dict]:
    """One row per backend: median ms of a training step and its peak extra memory."""
    rows = []
    for impl, backend in BACKENDS.items():
        row = {"loss": TRAIN_STEP, "impl": impl, "mode": "train step", "B": batch_size}

        def work():
            try:
                step = make_train_step(device, backend, batch_size)
            except ImportError as exc:
                raise ImportError(f"trainer not available ({exc})") from exc
            timing = time_step(lambda i: None, lambda _: step(), device, settings, flush)
            peak = peak_extra_memory(lambda i: None, lambda _: step(), device)
            row.update(timing_fields(timing, peak))

        row["status"] = attempt(work, device) or "ok"
        rows.append(row)
    return rows
