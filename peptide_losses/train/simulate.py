"""Simulated annotated spectra from real tryptic peptides (the trainer's embedded default).

Peptides come from a synthetic proteome: 150 protein sequences of 300-700
residues drawn (fixed seed) with the amino-acid composition of
UniProtKB/Swiss-Prot, digested with trypsin by pyteomics (one missed cleavage,
7 to 18 residues). The peptides are tryptic (K/R C-termini, realistic lengths
and composition) but not those of real proteins: no protein database is
bundled with the package. Pass ``--data`` for real annotated spectra. A stable
hash sends a fixed fraction of them to validation, so validation peptides are
never trained on.

A spectrum holds b/y ions at fragment charges 1..max(1, z - 1), optional a
ions and water/ammonia losses, intensities from a position-dependent model
with log-normal noise, missing fragments, m/z jitter in ppm and uniform noise
peaks; the precursor m/z carries ppm jitter and an optional +1 isotope error.
Everything is drawn from the ``numpy.random.Generator`` passed in, so a seed
fixes every spectrum.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from ..constants import C13_C12, CO, H2O, NH3, PROTON
from ..spectra import Preprocessing, Spectrum
from ..vocabulary import Vocabulary
from .config import SimulationSettings

#: Amino-acid composition (%) of UniProtKB/Swiss-Prot, for the synthetic proteome.
COMPOSITION = {
    "A": 8.25, "R": 5.53, "N": 4.06, "D": 5.45, "C": 1.37, "Q": 3.93, "E": 6.75, "G": 7.07, "H": 2.27, "I": 5.96,
    "L": 9.66, "K": 5.84, "M": 2.42, "F": 3.86, "P": 4.70, "S": 6.56, "T": 5.34, "W": 1.08, "Y": 2.92, "V": 6.87,
}
# Cysteines carry the fixed carbamidomethylation of real samples; methionines may be oxidised.
FIXED = {"C": "C[Carbamidomethyl]"}
OXIDISED = "M[Oxidation]"


def synthetic_proteome(n_proteins: int = 150, seed: int = 0) -> list[str]:
    """Protein sequences (300-700 residues) drawn with Swiss-Prot's composition."""
    rng = np.random.default_rng(seed)
    residues = np.array(list(COMPOSITION))
    weights = np.array(list(COMPOSITION.values()))
    weights = weights / weights.sum()
    return ["M" + "".join(rng.choice(residues, size=rng.integers(300, 701), p=weights)) for _ in range(n_proteins)]


@lru_cache(maxsize=4)
def tryptic_peptides(min_length: int = 7, max_length: int = 18) -> tuple[str, ...]:
    """Sorted unique tryptic peptides (one missed cleavage) of the synthetic proteome."""
    from pyteomics import parser

    peptides: set[str] = set()
    for sequence in synthetic_proteome():
        peptides |= parser.cleave(sequence, parser.expasy_rules["trypsin"], missed_cleavages=1,
                                  min_length=min_length, max_length=max_length)
    return tuple(sorted(peptides))


def is_validation_peptide(peptide: str, fraction: float) -> bool:
    """Stable (hash-based) membership of the validation peptides."""
    digest = int.from_bytes(hashlib.sha256(peptide.encode()).digest()[:8], "big")
    return digest / 2**64 < fraction


def split_peptides(fraction: float) -> tuple[list[str], list[str]]:
    """(training, validation) peptides; about ``fraction`` of them validate."""
    if not 0 < fraction < 1:
        raise ValueError(f"validation_peptide_fraction must be in (0, 1), got {fraction}")
    train, valid = [], []
    for peptide in tryptic_peptides():
        (valid if is_validation_peptide(peptide, fraction) else train).append(peptide)
    return train, valid


class SpectrumSimulator:
    """Draws annotated spectra of peptides under one :class:`SimulationSettings`.

    Args:
        peptides: plain residue strings to draw from (filtered to the
            settings' length range).
        settings: noise, charges, ion types of this split.
        vocabulary: encodes the annotations; must hold the modified residues used.
        preprocessing: applied to every spectrum, as to real data.
    """

    def __init__(self, peptides, settings: SimulationSettings, vocabulary: Vocabulary, preprocessing: Preprocessing):
        self.peptides = [p for p in peptides if settings.min_length <= len(p) <= settings.max_length]
        if not self.peptides:
            raise ValueError(f"no peptide of length {settings.min_length}..{settings.max_length} to simulate from")
        weights = np.asarray(settings.charge_weights, dtype=float)
        if weights.ndim != 1 or weights.size == 0 or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"charge_weights must be non-negative with a positive sum, got {settings.charge_weights}")
        self.charge_p = weights / weights.sum()
        self.settings = settings
        self.vocabulary = vocabulary
        self.preprocessing = preprocessing

    def sample(self, rng: np.random.Generator, count: int) -> list[Spectrum]:
        """``count`` spectra of peptides drawn uniformly."""
        picks = rng.integers(0, len(self.peptides), size=count)
        return [self.spectrum(self.peptides[i], rng) for i in picks]

    def spectrum(self, peptide: str, rng: np.random.Generator) -> Spectrum:
        """One simulated spectrum of ``peptide`` (plain residues), preprocessed."""
        s = self.settings
        residues = [FIXED.get(r, OXIDISED if r == "M" and rng.random() < s.oxidation_rate else r) for r in peptide]
        sequence = "".join(residues)
        tokens = self.vocabulary.encode(sequence)
        masses = np.asarray(self.vocabulary.residue_masses(tokens))
        charge = int(rng.choice(len(self.charge_p), p=self.charge_p)) + 1
        peptide_mass = masses.sum() + H2O

        n = len(masses)
        prefix = np.cumsum(masses)[:-1]
        position = np.arange(1, n)
        # Mid-peptide cleavages fragment best; y ions dominate tryptic spectra.
        shape = 0.3 + np.sin(np.pi * position / n)
        neutral = [prefix, peptide_mass - prefix]
        strength = [0.5 * shape, shape]
        if s.a_ion_rate > 0:
            neutral.append(prefix - CO)
            strength.append(0.3 * shape * (rng.random(n - 1) < s.a_ion_rate))
        if s.neutral_loss_rate > 0:
            loss = np.where(rng.random(n - 1) < 0.5, H2O, NH3)
            neutral.append(peptide_mass - prefix - loss)
            strength.append(0.2 * shape * (rng.random(n - 1) < s.neutral_loss_rate))
        neutral = np.concatenate(neutral)
        strength = np.concatenate(strength)

        missing = rng.uniform(*s.missing_rate)
        mz, intensity = [], []
        for z in range(1, max(1, charge - 1) + 1):
            present = (strength > 0) & (rng.random(strength.size) >= missing)
            ion_mz = (neutral[present] + z * PROTON) / z
            mz.append(ion_mz * (1 + s.mz_jitter_ppm * 1e-6 * rng.standard_normal(ion_mz.size)))
            intensity.append(strength[present] * 0.5 ** (z - 1) * rng.lognormal(0.0, 0.6, ion_mz.size))
        n_noise = int(rng.integers(s.noise_peaks[0], s.noise_peaks[1] + 1))
        mz.append(rng.uniform(50.0, peptide_mass + 50.0, n_noise))
        intensity.append(rng.exponential(0.15, n_noise))
        mz, intensity = np.concatenate(mz), np.concatenate(intensity)

        precursor = peptide_mass + (C13_C12 if rng.random() < s.isotope_error_rate else 0.0)
        precursor_mz = (precursor + charge * PROTON) / charge * (1 + s.precursor_jitter_ppm * 1e-6 * rng.standard_normal())
        order = np.argsort(mz, kind="stable")
        raw = Spectrum(mz[order], intensity[order], float(precursor_mz), charge, sequence, tokens, f"simulated:{sequence}")
        return self.preprocessing(raw)
