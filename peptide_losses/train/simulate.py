"""Simulated annotated spectra of tryptic peptides, drawn as whole batches on any device.

Peptides come from one of two pools (``simulation.peptides``):

- ``"synthetic"``: a synthetic proteome, protein sequences of 300-700 residues drawn
  (fixed seed) with the amino-acid composition of UniProtKB/Swiss-Prot, digested with
  trypsin by pyteomics (one missed cleavage, 7 to 18 residues): tryptic, but not the
  peptides of real proteins;
- ``"human"``: 98,190 real human tryptic peptides of 7-40 residues that the ProteomeTools
  project synthesised (``data/proteomes/``, shipped with its source and licence).

Pass ``--data`` for real annotated spectra. A stable hash sends a fixed fraction of the
pool to validation, so validation peptides are never trained on, and no peptide of a
shipped real evaluation set is ever a training peptide.

A spectrum holds b/y ions at fragment charges 1..max(1, z - 1), optional a
ions and water/ammonia losses, intensities from a position-dependent model
(or, with ``intensities = "ms2pip"``, b/y intensities predicted by ms2pip:
:mod:`.intensities`) with log-normal noise, missing fragments, m/z jitter in ppm and uniform noise
peaks; the precursor m/z carries ppm jitter and an optional +1 isotope error.
A whole batch is drawn with tensor operations on the device that trains (no
per-spectrum Python, no host sync), from the ``torch.Generator`` passed in, so
a seed fixes every spectrum on a given device.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache

import numpy as np
import torch

from ..constants import C13_C12, CO, H2O, NH3, PROTON
from ..datasets import DATA_DIR, evaluation_peptides, peptide_key
from ..spectra import Preprocessing, SpectrumBatch
from ..vocabulary import Vocabulary
from .config import SimulationSettings
from .intensities import load_intensities

#: Amino-acid composition (%) of UniProtKB/Swiss-Prot, for the synthetic proteome.
COMPOSITION = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27, "I": 5.96,
    "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87,
}
# Cysteines carry the fixed carbamidomethylation of real samples; methionines may be oxidised.
FIXED = {"C": "C[Carbamidomethyl]"}
OXIDISED = "M[Oxidation]"
#: Real human tryptic peptides (ProteomeTools, PXD004732), one per line; ``data/proteomes/README.md``.
HUMAN_PEPTIDES = DATA_DIR / "proteomes" / "human_proteometools_peptides.txt.gz"


def synthetic_proteome(n_proteins: int, seed: int = 0) -> list[str]:
    """Protein sequences (300-700 residues) drawn with Swiss-Prot's composition."""
    rng = np.random.default_rng(seed)
    residues = np.array(list(COMPOSITION))
    weights = np.array(list(COMPOSITION.values()))
    weights = weights / weights.sum()
    return ["M" + "".join(rng.choice(residues, size=rng.integers(300, 701), p=weights)) for _ in range(n_proteins)]


@lru_cache(maxsize=4)
def tryptic_peptides(n_proteins: int, min_length: int = 7, max_length: int = 18) -> tuple[str, ...]:
    """Sorted unique tryptic peptides (one missed cleavage) of a synthetic proteome of ``n_proteins``."""
    from pyteomics import parser

    peptides: set[str] = set()
    for sequence in synthetic_proteome(n_proteins):
        peptides |= parser.cleave(sequence, parser.expasy_rules["trypsin"], missed_cleavages=1,
                                  min_length=min_length, max_length=max_length)
    return tuple(sorted(peptides))


@lru_cache(maxsize=1)
def human_peptides() -> tuple[str, ...]:
    """Sorted unique real human tryptic peptides (ProteomeTools, 7-40 residues, unmodified)."""
    with gzip.open(HUMAN_PEPTIDES, "rt", encoding="ascii") as handle:
        peptides = {line.strip() for line in handle} - {""}
    unknown = sorted({r for p in peptides for r in p} - set(COMPOSITION))
    if unknown:
        raise ValueError(f"{HUMAN_PEPTIDES}: residues {unknown} are not among the 20 amino acids")
    return tuple(sorted(peptides))


def peptide_pool(source: str, n_proteins: int) -> tuple[str, ...]:
    """The sorted peptides of a pool: ``"human"`` (:func:`human_peptides`) or ``"synthetic"``
    (:func:`tryptic_peptides` of ``n_proteins`` proteins)."""
    if source == "human":
        return human_peptides()
    if source == "synthetic":
        return tryptic_peptides(n_proteins)
    raise ValueError(f"simulation.peptides must be 'synthetic' or 'human', got {source!r}")


def is_validation_peptide(peptide: str, fraction: float) -> bool:
    """Stable (hash-based) membership of the validation peptides."""
    digest = int.from_bytes(hashlib.sha256(peptide.encode()).digest()[:8], "big")
    return digest / 2**64 < fraction


def split_peptides(fraction: float, n_proteins: int, source: str = "synthetic") -> tuple[list[str], list[str]]:
    """(training, validation) peptides of a pool (:func:`peptide_pool`); about ``fraction`` of them validate. No
    peptide of a shipped real set (:func:`peptide_losses.datasets.evaluation_peptides`) is ever a
    training peptide."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_peptide_fraction must be in (0, 1), got {fraction}")
    held_out = evaluation_peptides()
    train, valid = [], []
    for peptide in peptide_pool(source, n_proteins):
        if is_validation_peptide(peptide, fraction):
            valid.append(peptide)
        elif peptide_key(peptide) not in held_out:
            train.append(peptide)
    return train, valid


def generator(device, *seeds: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from a tuple of integers (seed, stream, step, rank...)."""
    digest = hashlib.sha256(repr(tuple(int(s) for s in seeds)).encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "big") >> 1)


def cleavage_shape(lengths: torch.Tensor, slots: int) -> torch.Tensor:
    """(B, slots) float64 y-ion strength of each cleavage slot of peptides of ``lengths`` residues
    (the b ion gets half of it), 0 past the last real slot: the ``"shape"`` intensity model."""
    position = torch.arange(1, slots + 1, device=lengths.device, dtype=torch.float64)
    real = position[None] < lengths[:, None]
    # Mid-peptide cleavages fragment best; y ions dominate tryptic spectra.
    return torch.where(real, 0.3 + torch.sin(torch.pi * position[None] / lengths[:, None]), 0.0)


class SpectrumSimulator:
    """Draws batches of annotated spectra of peptides under one :class:`SimulationSettings`.

    Args:
        peptides: plain residue strings to draw from (filtered to the
            settings' length range).
        settings: noise, charges, ion types of this split.
        vocabulary: encodes the annotations; must hold ``C[Carbamidomethyl]``
            and ``M[Oxidation]``.
        preprocessing: applied to every spectrum, as to real data.
        max_length: L of the batches' token rows (at least the longest peptide).
        device: where the peptide table lives and batches are drawn.
    """

    def __init__(self, peptides, settings: SimulationSettings, vocabulary: Vocabulary, preprocessing: Preprocessing,
                 max_length: int, device="cpu") -> None:
        peptides = [p for p in peptides if settings.min_length <= len(p) <= settings.max_length]
        if not peptides:
            raise ValueError(f"no peptide of length {settings.min_length}..{settings.max_length} to simulate from")
        if settings.max_length > max_length:
            raise ValueError(f"peptides of up to {settings.max_length} residues do not fit max_length={max_length}")
        weights = torch.tensor(settings.charge_weights, dtype=torch.float64)
        if weights.ndim != 1 or weights.numel() == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"charge_weights must be non-negative with a positive sum, got {settings.charge_weights}")
        self.device = torch.device(device)
        self.charge_cdf = (weights.cumsum(0) / weights.sum()).to(self.device)
        self.max_charge = len(settings.charge_weights)
        self.settings = settings
        self.vocabulary = vocabulary
        self.preprocessing = preprocessing
        # Residue letter -> token index; cysteines carry the fixed carbamidomethylation.
        lookup = np.zeros(256, dtype=np.int64)
        for residue in COMPOSITION:
            lookup[ord(residue)] = vocabulary.index(FIXED.get(residue, residue))
        table = np.zeros((len(peptides), max_length), dtype=np.int64)
        for row, peptide in enumerate(peptides):
            table[row, : len(peptide)] = lookup[np.frombuffer(peptide.encode(), dtype=np.uint8)]
        self.tokens = torch.from_numpy(table).to(self.device)
        self.lengths = torch.tensor([len(p) for p in peptides], device=self.device)
        self.methionine, self.oxidised = vocabulary.index("M"), vocabulary.index(OXIDISED)
        self.masses = vocabulary.mass_tensor(device=self.device)
        self.predicted = None
        if settings.intensities == "ms2pip":
            charges = [z for z, w in enumerate(settings.charge_weights, 1) if w > 0]
            self.predicted = load_intensities(peptides, charges, max_length - 1).to(self.device)

    def __len__(self) -> int:
        """The number of distinct peptides drawn from."""
        return self.tokens.shape[0]

    def sample(self, count: int, generator: torch.Generator, pick: torch.Tensor | None = None,
               charge: torch.Tensor | None = None) -> SpectrumBatch:
        """``count`` spectra of peptides drawn uniformly, preprocessed, as a batch on the simulator's device.

        ``pick`` (count,): the peptides' indices instead (in the order given at construction, after
        the length filter); ``charge`` (count,): their precursor charges instead of the drawn ones
        (both to simulate known peptides, e.g. real spectra's, one for one). The draws they replace
        are still made, so the rest of a batch is the same with them or without.
        """
        s, dev, g = self.settings, self.device, generator
        f64 = torch.float64

        def uniform(*shape):
            return torch.rand(shape, generator=g, device=dev, dtype=f64)

        def normal(*shape):
            return torch.randn(shape, generator=g, device=dev, dtype=f64)

        drawn = torch.randint(0, len(self), (count,), generator=g, device=dev)
        pick = drawn if pick is None else pick.to(dev)
        tokens, n = self.tokens[pick], self.lengths[pick]
        oxidise = (tokens == self.methionine) & (uniform(*tokens.shape) < s.oxidation_rate)
        tokens = torch.where(oxidise, self.oxidised, tokens)
        masses = self.masses[tokens]
        peptide_mass = masses.sum(1) + H2O
        drawn = torch.searchsorted(self.charge_cdf, uniform(count, 1)).squeeze(1).clamp_max(self.max_charge - 1) + 1
        charge = drawn if charge is None else charge.to(dev)
        # Given charges may pass the split's: read once, outside the training path (no host sync there).
        max_charge = self.max_charge if charge is drawn else max(self.max_charge, int(charge.max()))

        # Slot l is the cleavage after residue l + 1; real slots are l < n - 1.
        prefix = masses.cumsum(1)[:, :-1]
        slots = prefix.shape[1]
        shape = cleavage_shape(n, slots)
        b_strength, y_strength = 0.5 * shape, shape
        if self.predicted is not None:
            # ms2pip's b/y pattern, carrying the same total b/y intensity as the shape model.
            predicted = self.predicted[pick, charge - 1].double() * (1.5 * shape).sum(1)[:, None, None]
            chosen = uniform(count, 1) < s.predicted_fraction
            b_strength = torch.where(chosen, predicted[:, 0, :slots], b_strength)
            y_strength = torch.where(chosen, predicted[:, 1, :slots], y_strength)
        suffix = peptide_mass[:, None] - prefix
        loss = torch.where(uniform(count, slots) < 0.5, H2O, NH3)
        neutral = torch.stack([prefix, suffix, prefix - CO, suffix - loss], 1)
        strength = torch.stack([
            b_strength, y_strength,
            0.3 * shape * (uniform(count, slots) < s.a_ion_rate),
            0.2 * shape * (uniform(count, slots) < s.neutral_loss_rate),
        ], 1).flatten(1)
        neutral = neutral.flatten(1)

        missing = s.missing_rate[0] + (s.missing_rate[1] - s.missing_rate[0]) * uniform(count, 1)
        mz, intensity, valid = [], [], []
        for z in range(1, max(1, max_charge - 1) + 1):
            ion = (neutral + z * PROTON) / z
            mz.append(ion * (1 + s.mz_jitter_ppm * 1e-6 * normal(*ion.shape)))
            intensity.append(strength * 0.5 ** (z - 1) * torch.exp(0.6 * normal(*ion.shape)))
            allowed = (z <= (charge - 1).clamp_min(1))[:, None]
            valid.append((strength > 0) & allowed & (uniform(*ion.shape) >= missing))
        low, high = s.noise_peaks
        noise = torch.arange(high, device=dev)[None] < torch.randint(low, high + 1, (count, 1), generator=g, device=dev)
        mz.append(50.0 + uniform(count, high) * peptide_mass[:, None])
        intensity.append(-0.15 * torch.log1p(-uniform(count, high)))
        valid.append(noise)

        isotope = torch.where(uniform(count) < s.isotope_error_rate, C13_C12, 0.0)
        precursor_mz = (peptide_mass + isotope + charge * PROTON) / charge * (1 + s.precursor_jitter_ppm * 1e-6 * normal(count))
        # Drawn last and only when asked for, so that a split without them draws what it always drew.
        if s.internal_rate > 0 or s.immonium_rate > 0:
            mean = (shape.sum(1) / (n - 1).clamp_min(1))[:, None]  # a cleavage's mean strength
            if s.internal_rate > 0:
                self._internal_fragments(masses, n, mean, s.internal_rate, uniform, normal, mz, intensity, valid)
            if s.immonium_rate > 0:
                self._immonium_ions(masses, n, mean, s.immonium_rate, uniform, normal, mz, intensity, valid)
        peaks_mz, peaks_intensity, peak_mask = self.preprocessing.batch(
            torch.cat(mz, 1), torch.cat(intensity, 1), torch.cat(valid, 1), precursor_mz, charge,
            max_charge=max_charge,
        )
        return SpectrumBatch(
            mz=peaks_mz.float(), intensity=peaks_intensity.float(), peak_mask=peak_mask,
            precursor_mz=precursor_mz, charge=charge, tokens=tokens, mask=tokens != 0, vocabulary=self.vocabulary,
        )

    @staticmethod
    def _internal_fragments(masses, n, mean, rate, uniform, normal, mz, intensity, valid) -> None:
        """Singly charged internal b-type fragments of 2-4 residues that hold neither terminus, each present
        with probability ``rate``, a fifth of the mean cleavage strength (appended to the peak lists)."""
        count, length = masses.shape
        edges = torch.nn.functional.pad(masses.cumsum(1), (1, 0))  # mass before residue i, i = 0..L
        for span in (2, 3, 4):
            if length - span - 1 < 1:
                continue
            start = torch.arange(1, length - span, device=masses.device)[None]  # residues start..start+span-1
            fragment = edges[:, start[0] + span] - edges[:, start[0]]
            mz.append(fragment + PROTON)
            intensity.append(0.2 * mean * torch.exp(0.6 * normal(count, start.shape[1])))
            valid.append((start + span <= (n - 1)[:, None]) & (uniform(count, start.shape[1]) < rate))

    @staticmethod
    def _immonium_ions(masses, n, mean, rate, uniform, normal, mz, intensity, valid) -> None:
        """Each residue's immonium ion (residue - CO + proton), present with probability ``rate``, a tenth of
        the mean cleavage strength (appended to the peak lists)."""
        count, length = masses.shape
        mz.append(masses - CO + PROTON)
        intensity.append(0.1 * mean * torch.exp(0.6 * normal(count, length)))
        valid.append((torch.arange(length, device=masses.device)[None] < n[:, None]) & (uniform(count, length) < rate))
