"""How well the simulator's b/y intensities match real spectra: ms2pip against the shape model.

``python -m benchmarks.training.intensity_model`` (needs the ``simulate`` extra): for
each annotated real spectrum, the observed intensity of each b and y ion
(fragment charge 1; the nearest peak within ``--tolerance`` Da, squared because
the shared file's intensities are square roots; 0 when none) against the
intensity each model predicts, both normalised to sum 1 over the ions and
compared as log2(I + 0.001), ms2pip's own transform. Reports the median and
quartiles over spectra of the Pearson correlation, and the share of predicted
b/y ions that fall on a peak. Writes ``benchmarks/results/cpu/intensity_model.json``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from peptide_losses import Vocabulary
from peptide_losses.constants import H2O, PROTON
from peptide_losses.datasets import CASANOVO_SAMPLE
from peptide_losses.spectra import read_mgf
from peptide_losses.train.intensities import ms2pip_predictor
from peptide_losses.train.simulate import cleavage_shape

from ..environment import RESULTS_ROOT, describe


def observed_by(spectrum, residue_masses: list[float], tolerance: float) -> np.ndarray:
    """(2, n - 1) observed intensities of b_{l+1} and its complement y_{n-l-1} per slot l."""
    prefix = np.cumsum(residue_masses)[:-1]
    ions = np.stack([prefix + PROTON, sum(residue_masses) + H2O - prefix + PROTON])
    at = np.clip(np.searchsorted(spectrum.mz, ions), 1, len(spectrum.mz) - 1)
    nearest = np.where(np.abs(spectrum.mz[at - 1] - ions) < np.abs(spectrum.mz[at] - ions), at - 1, at)
    hit = np.abs(spectrum.mz[nearest] - ions) <= tolerance
    return np.where(hit, spectrum.intensity[nearest] ** 2, 0.0)


def pearson(predicted: np.ndarray, observed: np.ndarray) -> float:
    a, b = (np.log2(x / max(x.sum(), 1e-30) + 0.001).ravel() for x in (predicted, observed))
    return float(np.corrcoef(a, b)[0, 1])


def proforma(sequence: str) -> str:
    """The annotation as ProForma for ms2pip (N-terminal ``[mod]-`` is already ProForma)."""
    return re.sub(r"\[(\d)", r"[+\1", sequence)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mgf", default=str(CASANOVO_SAMPLE))
    p.add_argument("--tolerance", type=float, default=0.02, help="peak match tolerance (Da)")
    p.add_argument("--out", default=str(RESULTS_ROOT / "cpu"))
    args = p.parse_args(argv)
    vocabulary = Vocabulary.default()
    spectra = [s for s in read_mgf(args.mgf, vocabulary) if s.sequence]
    predicted = ms2pip_predictor()([(proforma(s.sequence), s.charge) for s in spectra])
    scores: dict[str, list[float]] = {"ms2pip": [], "shape": []}
    explained = []
    for spectrum, intensities in zip(spectra, predicted):
        masses = vocabulary.residue_masses(spectrum.tokens)
        observed = observed_by(spectrum, masses, args.tolerance)
        n = len(masses)
        ms2pip = np.stack([np.exp2(intensities["b"]), np.exp2(intensities["y"])[::-1]])
        shape = cleavage_shape(torch.tensor([n]), n - 1)[0].numpy()
        scores["ms2pip"].append(pearson(np.clip(ms2pip - 0.001, 0, None), observed))
        scores["shape"].append(pearson(np.stack([0.5 * shape, shape]), observed))
        explained.append(float((observed > 0).mean()))
    summary = {name: {"median": float(np.median(v)), "q25": float(np.quantile(v, 0.25)),
                      "q75": float(np.quantile(v, 0.75))} for name, v in scores.items()}
    report = {"environment": describe(torch.device("cpu")), "mgf": Path(args.mgf).name, "spectra": len(spectra),
              "tolerance_da": args.tolerance, "pearson_log2": summary,
              "by_ions_on_a_peak": float(np.mean(explained)), "per_spectrum": scores}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "intensity_model.json").write_text(json.dumps(report, indent=2))
    for name, row in summary.items():
        print(f"{name:<8} Pearson median {row['median']:.3f} [{row['q25']:.3f}, {row['q75']:.3f}]")
    print(f"b/y ions on a peak: {report['by_ions_on_a_peak']:.3f} of {len(spectra)} spectra")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
