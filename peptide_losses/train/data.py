"""Batches for training and validation, each a pure function of (seed, step, rank).

Because a batch depends only on the step (not on an iterator's history), a
resumed run sees exactly the batches the uninterrupted run would have seen,
and every DDP rank draws its own share without a sampler.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..datasets import REAL_SETS, real_set
from ..spectra import Preprocessing, Spectrum, SpectrumBatch, collate, read_mgf
from ..vocabulary import Vocabulary
from .config import TrainConfig
from .simulate import SpectrumSimulator, generator, split_peptides

log = logging.getLogger(__name__)

# Distinct streams of the seeded generator for the fixed validation splits.
VALIDATION_STREAMS = {"easy": 1, "hard": 2}


class SimulatedTraining:
    """Fresh simulated spectra of the training peptides at every step, drawn on ``device``
    (the same seed gives the same batches on the same kind of device)."""

    def __init__(self, config: TrainConfig, vocabulary: Vocabulary, device="cpu") -> None:
        sim = config.simulation
        train, _ = split_peptides(sim.validation_peptide_fraction, sim.proteins, sim.peptides)
        self.simulator = SpectrumSimulator(train, sim.train, vocabulary, Preprocessing(), config.max_length, device)
        self.config = config

    def batch(self, step: int, rank: int = 0, world: int = 1) -> SpectrumBatch:
        rng = generator(self.simulator.device, self.config.seed, 0, step, rank)
        return self.simulator.sample(self.config.batch_size, rng)


def read_annotated(path: str | Path, vocabulary: Vocabulary, max_length: int) -> list[Spectrum]:
    """Annotated spectra of an MGF, or of a shipped real set named as in
    :data:`peptide_losses.datasets.REAL_SETS`, preprocessed; unannotated or too long ones are
    left out (logged)."""
    if str(path) in REAL_SETS:
        spectra = [item.spectrum for item in real_set(str(path), vocabulary, Preprocessing())]
    else:
        spectra = read_mgf(path, vocabulary, preprocessing=Preprocessing())
    kept = [s for s in spectra if s.tokens is not None and 2 <= len(s.tokens) <= max_length]
    if len(kept) < len(spectra):
        log.warning("%s: left out %d of %d spectra (no SEQ, or not 2..%d tokens)",
                    path, len(spectra) - len(kept), len(spectra), max_length)
    if not kept:
        raise ValueError(f"{path} holds no annotated spectrum of 2..{max_length} tokens to train or evaluate on")
    return kept


class MGFTraining:
    """Epochs over an annotated MGF file, in a fresh seeded order each epoch."""

    def __init__(self, config: TrainConfig, vocabulary: Vocabulary, path: str | Path) -> None:
        self.spectra = read_annotated(path, vocabulary, config.max_length)
        self.config = config
        self.vocabulary = vocabulary

    def _order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.config.seed, 1, epoch]).permutation(len(self.spectra))

    def batch(self, step: int, rank: int = 0, world: int = 1) -> SpectrumBatch:
        size, n = self.config.batch_size, len(self.spectra)
        start = (step * world + rank) * size
        orders: dict[int, np.ndarray] = {}
        picks = []
        for k in range(start, start + size):
            epoch, position = divmod(k, n)
            if epoch not in orders:
                orders[epoch] = self._order(epoch)
            picks.append(self.spectra[orders[epoch][position]])
        return collate(picks, self.vocabulary, max_length=self.config.max_length)


def training_data(config: TrainConfig, vocabulary: Vocabulary, device="cpu"):
    """Simulated data (drawn on ``device``), or the annotated MGF named by ``config.data``."""
    return MGFTraining(config, vocabulary, config.data) if config.data else SimulatedTraining(config, vocabulary, device)


def validation_sets(config: TrainConfig, vocabulary: Vocabulary, extra: dict[str, str | Path] | None = None,
                    chunk: int = 128) -> dict[str, list[SpectrumBatch]]:
    """The fixed validation splits as lists of CPU batches: simulated ``easy`` and
    ``hard`` spectra of the validation peptides (drawn on the CPU, so every
    training device validates on the same spectra), plus each annotated MGF or shipped real set in ``extra``."""
    sim = config.simulation
    _, peptides = split_peptides(sim.validation_peptide_fraction, sim.proteins, sim.peptides)
    splits: dict[str, list[SpectrumBatch]] = {}
    for name, stream in VALIDATION_STREAMS.items():
        simulator = SpectrumSimulator(peptides, getattr(sim, name), vocabulary, Preprocessing(), config.max_length)
        rng = generator("cpu", config.seed, stream)
        size = config.logging.validation_size
        splits[name] = [simulator.sample(min(chunk, size - i), rng) for i in range(0, size, chunk)]
    for name, path in (extra or {}).items():
        items = read_annotated(path, vocabulary, config.max_length)
        splits[name] = [collate(items[i : i + chunk], vocabulary, max_length=config.max_length)
                        for i in range(0, len(items), chunk)]
    return splits
