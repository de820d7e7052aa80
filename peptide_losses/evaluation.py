"""How good a file of PSMs is against annotated spectra: recalls, precisions, precision-coverage.

Each spectrum's PSM is its row with the highest ``search_engine_score[1]`` (the first such
row on a tie). Residues and peptides match by mass as in Casanovo
(:func:`peptide_losses.train.metrics.residue_matches`: I = L, D = N[Deamidated]):

- peptide recall: spectra whose PSM matches its annotation / annotated spectra;
- amino-acid precision: matched residues / residues of all PSMs;
- amino-acid recall: matched residues / residues of all annotations;
- the precision-coverage curve: the PSMs sorted by score, best first; after the n-th,
  precision = matching PSMs among them / n and coverage = n / annotated spectra. Its
  area (AUC, trapezoids from coverage 0) rewards a score that ranks right PSMs first;
  a tool that finds every peptide and scores them all gets 1.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .mztab import PSMRow
from .spectra_files import Indexed
from .train.metrics import residue_matches
from .vocabulary import Vocabulary


class EvaluationError(ValueError):
    """PSMs that cannot be set against the annotations (a spectra_ref of no annotated spectrum, a
    sequence the vocabulary cannot read); the message names the PSM file's line."""


def best_psms(psms: Sequence[PSMRow]) -> dict[str, PSMRow]:
    """``{ref: the PSM of highest score}`` (NaN scores lowest; the first row on a tie)."""
    best: dict[str, PSMRow] = {}
    for psm in psms:
        kept = best.get(psm.ref)
        if kept is None or _rank_key(psm.score) > _rank_key(kept.score):
            best[psm.ref] = psm
    return best


def _rank_key(score: float) -> float:
    return -math.inf if math.isnan(score) else score


def precision_coverage(correct: Sequence[bool], scores: Sequence[float], total: int) -> dict[str, list[float] | float]:
    """The curve of PSMs ranked by ``scores`` (best first, stable) against ``total`` annotated spectra:
    ``coverage``, ``precision`` (one point per PSM) and their ``auc``."""
    order = sorted(range(len(scores)), key=lambda i: -_rank_key(scores[i]))
    hits = np.cumsum([bool(correct[i]) for i in order], dtype=np.float64)
    n = np.arange(1, len(order) + 1, dtype=np.float64)
    coverage = n / total if total else n * 0
    precision = hits / n
    # From coverage 0 at the first PSM's precision, so a single right PSM has area 1/total.
    xs = np.concatenate([[0.0], coverage])
    ys = np.concatenate([precision[:1], precision])
    auc = float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2)) if len(order) else 0.0
    return {"coverage": coverage.tolist(), "precision": precision.tolist(), "auc": auc}


def evaluate_psms(psms: Sequence[PSMRow], annotated: Sequence[Indexed], vocabulary: Vocabulary,
                  psm_file: str = "PSMs") -> dict:
    """Metrics of ``psms`` (any number per spectrum) against the ``annotated`` spectra (each with
    ``tokens``). Returns a dict: ``spectra``, ``psms`` (spectra with a PSM), ``peptide_recall``,
    ``aa_precision``, ``aa_recall``, ``precision_at_full_coverage`` and ``curve``
    (:func:`precision_coverage`)."""
    by_ref = {item.ref: item.spectrum for item in annotated}
    for item in annotated:
        if item.spectrum.tokens is None:
            raise EvaluationError(f"annotations: spectrum {item.ref} (TITLE={item.spectrum.title}) has no annotation")
    best = best_psms(psms)
    for ref, psm in best.items():
        if ref not in by_ref:
            raise EvaluationError(f"{psm_file}, line {psm.line}: spectra_ref ms_run[1]:{ref} is not one of the "
                                  f"{len(by_ref)} annotated spectra (refs {next(iter(by_ref))} ...)")
    table = vocabulary.masses
    matched_residues = predicted_residues = 0
    correct, scores = [], []
    for ref, psm in best.items():
        try:
            predicted = [table[t] for t in vocabulary.encode(psm.sequence)]
        except ValueError as err:
            raise EvaluationError(f"{psm_file}, line {psm.line}: sequence {psm.sequence!r}: {err}") from None
        true = [table[t] for t in by_ref[ref].tokens]
        matches = residue_matches(predicted, true)
        matched_residues += int(matches.sum())
        predicted_residues += len(predicted)
        correct.append(bool(matches.all()) and len(true) > 0)
        scores.append(psm.score)
    total = len(annotated)
    true_residues = sum(len(item.spectrum.tokens) for item in annotated)
    curve = precision_coverage(correct, scores, total)
    return {
        "spectra": total,
        "psms": len(best),
        "peptide_recall": sum(correct) / total if total else 0.0,
        "aa_precision": matched_residues / predicted_residues if predicted_residues else 0.0,
        "aa_recall": matched_residues / true_residues if true_residues else 0.0,
        "precision_at_full_coverage": sum(correct) / len(correct) if correct else 0.0,
        "auc": curve["auc"],
        "curve": curve,
    }
