"""End to end: one training step of the slim trainer with our losses against the reference's.

The step is the trainer's (``peptide_losses.train``): its default configuration,
its model (:class:`TinyRecursiveModel`), its objective (CE + the two mass losses
at the last stage's weights), AdamW with gradient clipping, on a fixed batch of
its simulated spectra; only the mass losses' backend differs between the rows.
When the trainer's pieces do not import, the rows say ``not run`` with the reason.
"""

from __future__ import annotations

import numpy as np
import torch

from .measure import attempt, timing_fields
from .report import TRAIN_STEP
from .timing import L2Flush, TimingSettings, peak_extra_memory, time_step

BATCH_SIZE = 256
#: Implementation column of the rows -> the losses' backend in the trainer.
BACKENDS = {"triton": "triton", "eager": "reference"}


def make_train_step(device: torch.device, backend: str, batch_size: int):
    """A no-argument callable running one optimisation step of the trainer on a fixed batch."""
    from peptide_losses.spectra import Preprocessing, collate
    from peptide_losses.train.config import load_config
    from peptide_losses.train.model import TinyRecursiveModel
    from peptide_losses.train.objective import Objective
    from peptide_losses.train.simulate import SpectrumSimulator, split_peptides
    from peptide_losses.vocabulary import Vocabulary

    config = load_config()
    vocabulary = Vocabulary.default()
    peptides, _ = split_peptides(config.simulation.validation_peptide_fraction)
    simulator = SpectrumSimulator(peptides, config.simulation.train, vocabulary, Preprocessing())
    spectra = simulator.sample(np.random.default_rng(0), batch_size)
    batch = collate(spectra, vocabulary, max_length=config.max_length).to(device)
    torch.manual_seed(0)
    model = TinyRecursiveModel(config.model, len(vocabulary), config.max_length).to(device)
    objective = Objective(vocabulary, config.losses, backend=backend).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr,
                                  weight_decay=config.optimizer.weight_decay)
    schedule = config.schedule
    weights = {"ce": schedule.ce_weight, "spectrum": schedule.spectrum_weights[-1],
               "precursor": schedule.precursor_weights[-1]}

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        logits = model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
        objective(logits, batch).total(weights).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optimizer.grad_clip)
        optimizer.step()

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
