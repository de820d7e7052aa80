"""How far the simulator's spectra are from real ones: each real calibration spectrum simulated with
its own peptide and charge, and the distributions of what a spectrum holds compared statistic by
statistic.

    python -m benchmarks.training.sim_to_real                # CPU, about a minute
    python -m benchmarks.training.sim_to_real --smoke        # 16 spectra: the harness only

Real: the MassIVE-KB calibration half (never the test half, never the Casanovo sample). Each
spectrum's peptide (modifications dropped, cysteines carbamidomethylated as the simulator writes
them) and charge are simulated once per simulator variant (the trainer's ``train`` split
settings, and the same with every spectrum's b/y intensities from ms2pip where it is installed).
Both sides are preprocessed alike, lightly (peaks of 50-2,500 m/z above 1 % of the top one, at
most 150, square-rooted; precursor peaks kept, since they are one of the statistics). Per
spectrum, annotated by its peptide, ions matched within 0.02 m/z:

- ``peaks``: how many; ``explained``: share of intensity at b/y ions (fragment charges 1..z-1);
- ``coverage``: share of cleavage sites with a b or y ion; ``coverage_n`` / ``coverage_c``: the
  same over the first / last third of the sites;
- ``y_share``: y intensity / (b + y intensity);
- ``unexplained_height``: median intensity of the peaks no b/y ion explains;
- ``neutral_losses``: share of intensity at b/y - H2O or - NH3 (and not b/y);
- ``internal``: share of intensity at internal b-type fragments of 2-4 residues (and none of the above);
- ``immonium``: share of intensity at the residues' immonium ions;
- ``precursor``: share of intensity within 0.02 m/z of the precursor m/z or its water / ammonia losses;
- ``pattern``: Pearson correlation of the spectrum's b/y intensities with the real spectrum's,
  same peptide, matched ion by ion (real vs real: 1).

The distance of a statistic is the 1-Wasserstein distance between its real and simulated values,
divided by the real values' standard deviation (0: the same distribution; ``pattern`` is reported
as its median, which should approach 1). The real charge mix is printed beside the simulator's.
Writes ``results/cpu/sim_to_real.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from peptide_losses import Vocabulary
from peptide_losses.constants import CO, H2O, NH3, PROTON
from peptide_losses.datasets import real_set
from peptide_losses.predicted_intensity import available as ms2pip_available
from peptide_losses.spectra import Preprocessing
from peptide_losses.train.config import load_config
from peptide_losses.train.simulate import COMPOSITION, FIXED, SpectrumSimulator, generator

from ..environment import RESULTS_ROOT, describe

SET = "massivekb-calibration"
TOLERANCE = 0.02
#: What a spectrum holds, without the trainer's precursor removal (precursor peaks are a statistic).
LIGHT = Preprocessing(remove_precursor_tol=0.0)
STATISTICS = ("peaks", "explained", "coverage", "coverage_n", "coverage_c", "y_share", "unexplained_height",
              "neutral_losses", "internal", "immonium", "precursor")
SEED = 11
#: The simulator settings that closed the distance most on this calibration half, of a small grid
#: (internal 0.15 / 0.3 / 0.6 / 1.0, immonium 0.3 / 0.5 / 0.8, noise peaks [5, 100] / [20, 150] /
#: [40, 200] / [50, 200], summed distance): for the next preset run to test on real recall; not
#: yet the trainer's defaults, since no model has been trained on them.
PROPOSED = {"internal_rate": 0.15, "immonium_rate": 0.3, "noise_peaks": [20, 150]}


def _near(peaks: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Bool per peak: within TOLERANCE of any target m/z."""
    if len(targets) == 0 or len(peaks) == 0:
        return np.zeros(len(peaks), dtype=bool)
    targets = np.sort(targets)
    index = np.clip(np.searchsorted(targets, peaks), 1, len(targets) - 1) if len(targets) > 1 else np.zeros(
        len(peaks), int)
    nearest = np.minimum(np.abs(targets[index] - peaks), np.abs(targets[np.clip(index - 1, 0, None)] - peaks))
    return nearest <= TOLERANCE


def ion_table(residues: list[float], charge: int) -> dict[str, np.ndarray]:
    """m/z of a peptide's ions by kind (residue masses in Da, precursor charge)."""
    masses = np.asarray(residues)
    prefix = np.cumsum(masses)[:-1]
    total = masses.sum()
    charges = range(1, max(1, charge - 1) + 1)
    b = np.concatenate([(prefix + z * PROTON) / z for z in charges])
    y = np.concatenate([(total - prefix + H2O + z * PROTON) / z for z in charges])
    internal = [masses[i:i + n].sum() + PROTON for n in (2, 3, 4) for i in range(1, len(masses) - n)]
    neutral = total + H2O
    return {
        "b": b, "y": y,
        "losses": np.concatenate([b - H2O, b - NH3, y - H2O, y - NH3]),
        "internal": np.asarray(internal),
        "immonium": np.unique(masses) - CO + PROTON,
        "precursor": np.array([(neutral - loss + charge * PROTON) / charge for loss in (0.0, H2O, NH3)]),
    }


def spectrum_statistics(mz: np.ndarray, intensity: np.ndarray, residues: list[float], charge: int) -> dict:
    ions = ion_table(residues, charge)
    total = max(intensity.sum(), 1e-12)
    at = {kind: _near(mz, targets) for kind, targets in ions.items()}
    by = at["b"] | at["y"]
    sites = len(residues) - 1
    # Site i (after residue i + 1): its singly charged b ion and the complementary y ion, the first
    # ``sites`` entries of each.
    covered = _near(ions["b"][:sites], mz) | _near(ions["y"][:sites], mz)
    third = max(1, sites // 3)
    b_height, y_height = intensity[at["b"]].sum(), intensity[at["y"]].sum()
    losses = at["losses"] & ~by
    internal = at["internal"] & ~by & ~losses
    return {
        "peaks": float(len(mz)),
        "explained": intensity[by].sum() / total,
        "coverage": covered.mean() if sites else 0.0,
        "coverage_n": covered[:third].mean() if sites else 0.0,
        "coverage_c": covered[-third:].mean() if sites else 0.0,
        "y_share": y_height / max(b_height + y_height, 1e-12),
        "unexplained_height": float(np.median(intensity[~by])) if (~by).any() else 0.0,
        "neutral_losses": intensity[losses].sum() / total,
        "internal": intensity[internal].sum() / total,
        "immonium": intensity[at["immonium"]].sum() / total,
        "precursor": intensity[at["precursor"]].sum() / total,
    }


def by_pattern(mz: np.ndarray, intensity: np.ndarray, residues: list[float]) -> np.ndarray:
    """Singly charged b then y intensities of the peptide (nearest peak within TOLERANCE, else 0)."""
    ions = ion_table(residues, 2)
    out = []
    for target in np.concatenate([ions["b"], ions["y"]]):
        near = np.abs(mz - target) <= TOLERANCE
        out.append(intensity[near].max() if near.any() else 0.0)
    return np.asarray(out)


def distance(real: np.ndarray, simulated: np.ndarray) -> float:
    """1-Wasserstein distance of two samples (on 101 quantiles) over the real sample's standard deviation."""
    q = np.linspace(0, 1, 101)
    w1 = np.abs(np.quantile(real, q) - np.quantile(simulated, q)).mean()
    return float(w1 / max(real.std(), 1e-12))


def real_spectra(vocabulary: Vocabulary, limit: int | None):
    """(mz, intensity, residue masses, charge, plain peptide) of the calibration spectra the simulator can write."""
    out = []
    for _, s in real_set(SET, vocabulary, LIGHT)[:limit]:
        plain = "".join(vocabulary.tokens[t][0] for t in s.tokens if vocabulary.tokens[t][0] in COMPOSITION)
        residues = [vocabulary.masses[vocabulary.index(FIXED.get(r, r))] for r in plain]
        out.append((s.mz, s.intensity, residues, s.charge, plain))
    return out


def simulate(real, settings, vocabulary: Vocabulary) -> list[tuple[np.ndarray, np.ndarray]]:
    peptides = [r[4] for r in real]
    longest = max(map(len, peptides))
    # Every real charge drawable (its ms2pip table then holds it); the weights do not matter, the charges are given.
    charges = max(r[3] for r in real)
    settings = dataclasses.replace(settings, min_length=1, max_length=longest, oxidation_rate=0.0,
                                   charge_weights=[1.0] * charges)
    simulator = SpectrumSimulator(peptides, settings, vocabulary, LIGHT, longest)
    batch = simulator.sample(len(real), generator("cpu", SEED), pick=torch.arange(len(real)),
                             charge=torch.tensor([r[3] for r in real]))
    return [(batch.mz[b][batch.peak_mask[b]].double().numpy(), batch.intensity[b][batch.peak_mask[b]].double().numpy())
            for b in range(len(real))]


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="16 spectra, to check the harness")
    p.add_argument("--results", default=str(RESULTS_ROOT / "cpu"))
    args = p.parse_args(argv)
    vocabulary = Vocabulary.default()
    config = load_config()
    real = real_spectra(vocabulary, 16 if args.smoke else None)
    train = config.simulation.train
    variants = {"train split, shape intensities": dataclasses.replace(train, intensities="shape")}
    if ms2pip_available() and not args.smoke:
        predicted = dataclasses.replace(train, intensities="ms2pip", predicted_fraction=1.0)
        variants["train split, ms2pip intensities for every spectrum"] = predicted
        variants["the same + internal fragments, immonium ions, more noise (PROPOSED)"] = dataclasses.replace(
            predicted, **PROPOSED)
    real_stats = [spectrum_statistics(mz, i, res, z) for mz, i, res, z, _ in real]
    results = {}
    for name, settings in variants.items():
        sim = simulate(real, settings, vocabulary)
        stats = [spectrum_statistics(mz, i, r[2], r[3]) for (mz, i), r in zip(sim, real)]
        patterns = [np.corrcoef(by_pattern(mz, i, r[2]), by_pattern(r[0], r[1], r[2]))[0, 1]
                    for (mz, i), r in zip(sim, real)]
        results[name] = {
            **{k: {"distance": distance(np.array([s[k] for s in real_stats]), np.array([s[k] for s in stats])),
                   "real_median": float(np.median([s[k] for s in real_stats])),
                   "simulated_median": float(np.median([s[k] for s in stats]))} for k in STATISTICS},
            "pattern": {"median": float(np.nanmedian(patterns))},
        }
    charges = np.bincount([r[3] for r in real], minlength=5)[1:]
    weights = np.asarray(train.charge_weights, dtype=float)
    environment = describe(torch.device("cpu"))
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    record = {"environment": environment, "spectra": len(real), "real_charges": (charges / charges.sum()).tolist(),
              "train_charge_weights": (weights / weights.sum()).tolist(), "variants": results}
    name = "sim_to_real_smoke" if args.smoke else "sim_to_real"
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"# Simulated vs real spectra ({environment['date']}, {len(real)} spectra of {SET})", "",
             "Command: `python -m benchmarks.training.sim_to_real`; the statistics and the distance: its docstring. "
             f"Real charge mix 1+..4+: {', '.join(f'{c:.2f}' for c in record['real_charges'])}; the train split's: "
             f"{', '.join(f'{c:.2f}' for c in record['train_charge_weights'])}.", "",
             "| statistic | real median | " + " | ".join(f"{v}: median / distance" for v in results) + " |",
             "|---|---:|" + "---:|" * len(results)]
    for k in STATISTICS:
        cells = [f"{r[k]['simulated_median']:.3g} / **{r[k]['distance']:.2f}**" for r in results.values()]
        lines.append(f"| {k} | {next(iter(results.values()))[k]['real_median']:.3g} | " + " | ".join(cells) + " |")
    lines.append("| pattern (median Pearson with the real spectrum) | 1 | "
                 + " | ".join(f"{r['pattern']['median']:.2f}" for r in results.values()) + " |")
    lines.append("| **sum of the distances** | | " + " | ".join(
        f"**{sum(r[k]['distance'] for k in STATISTICS):.2f}**" for r in results.values()) + " |")
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    return out / f"{name}.md"


if __name__ == "__main__":
    print(main())
