"""What people watch: token / sequence accuracy, Casanovo's amino-acid and peptide
metrics, and the precursor ppm error of the decoded prediction.

Amino-acid precision / recall and peptide recall follow Casanovo's
(depthcharge's) definition: two residues match when their masses differ by
less than 0.1 Da and the prefix masses before them (scanning from the N
terminus), or else the suffix masses after them (scanning from the C
terminus), agree within 0.5 Da; a peptide matches when all its residues do.
Precision divides the matched residues by the predicted ones, recall by the
true ones; peptide recall divides matched peptides by all annotated spectra.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..decoding import candidate_ppm

RESIDUE_TOLERANCE = 0.1  # Da, one residue against another
PREFIX_TOLERANCE = 0.5  # Da, the running prefix (suffix) masses
ISOBARIC_TOLERANCE = 1e-3  # Da: I/L, D/N[Deamidated], E/Q[Deamidated]; K and Q (36 mDa apart) stay distinct


def _scan(pred, true, pred_order, true_order, matches: np.ndarray) -> None:
    """Walk both peptides in the given index orders, marking matched positions.

    Where the running masses agree within PREFIX_TOLERANCE the two residues are
    paired and position max(i, j) records whether they agree within
    RESIDUE_TOLERANCE; otherwise the peptide with the lighter running mass advances.
    """
    a = b = 0
    mass_p = mass_t = 0.0
    while a < len(pred_order) and b < len(true_order):
        i, j = pred_order[a], true_order[b]
        step_p, step_t = mass_p + pred[i], mass_t + true[j]
        if abs(step_p - step_t) < PREFIX_TOLERANCE:
            matches[max(i, j)] = abs(pred[i] - true[j]) < RESIDUE_TOLERANCE
            a, b, mass_p, mass_t = a + 1, b + 1, step_p, step_t
        elif step_t > step_p:
            a, mass_p = a + 1, step_p
        else:
            b, mass_t = b + 1, step_t


def residue_matches(pred: Sequence[float], true: Sequence[float]) -> np.ndarray:
    """Bool per position (length max(len(pred), len(true))): residue matched.

    Residue masses in Da. A prefix scan from the N terminus, then, unless
    everything matched, a suffix scan from the C terminus down to the first
    unmatched position (Casanovo's ``aa_match_prefix_suffix``).
    """
    matches = np.zeros(max(len(pred), len(true)), dtype=bool)
    _scan(pred, true, range(len(pred)), range(len(true)), matches)
    if matches.all():
        return matches
    stop = int(np.argmin(matches))
    _scan(pred, true, range(len(pred) - 1, stop - 1, -1), range(len(true) - 1, stop - 1, -1), matches)
    return matches


def peptide_masses(tokens: torch.Tensor, masses: torch.Tensor) -> list[list[float]]:
    """Per-peptide residue masses (Da) of token rows (B, L), padding (0) dropped."""
    tokens = tokens.cpu()
    table = masses.cpu().tolist()
    return [[table[t] for t in row if t] for row in tokens.tolist()]


def peptide_matches(pred_tokens: torch.Tensor, true_tokens: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """(B,) bool: the predicted peptide matches the true one (peptide recall's test, per row)."""
    pairs = zip(peptide_masses(pred_tokens, masses), peptide_masses(true_tokens, masses))
    return torch.tensor([len(true) > 0 and bool(residue_matches(pred, true).all()) for pred, true in pairs],
                        dtype=torch.bool)


def aa_metrics(pred_tokens: torch.Tensor, true_tokens: torch.Tensor, masses: torch.Tensor) -> dict[str, float]:
    """Amino-acid precision and recall and peptide recall of predicted vs true token rows (B, L)."""
    matched = n_pred = n_true = peptides = 0
    for pred, true in zip(peptide_masses(pred_tokens, masses), peptide_masses(true_tokens, masses)):
        m = residue_matches(pred, true)
        matched += int(m.sum())
        n_pred += len(pred)
        n_true += len(true)
        peptides += bool(m.all()) and len(true) > 0
    count = true_tokens.shape[0]
    return {
        "aa_precision": matched / n_pred if n_pred else 0.0,
        "aa_recall": matched / n_true if n_true else 0.0,
        "peptide_recall": peptides / count if count else 0.0,
    }


def same_residue(pred_tokens: torch.Tensor, true_tokens: torch.Tensor, masses: torch.Tensor) -> torch.Tensor:
    """Bool per position: the tokens are equal or isobaric (masses within ISOBARIC_TOLERANCE Da).

    No mass spectrum tells I from L, D from N[Deamidated] or E from
    Q[Deamidated]; a metric that counted them as errors would cap a perfect
    model's token accuracy near 0.93 on tryptic peptides (I is 6 % of residues).
    """
    return (masses[pred_tokens] - masses[true_tokens]).abs() < ISOBARIC_TOLERANCE


def token_metrics(pred_tokens: torch.Tensor, true_tokens: torch.Tensor, mask: torch.Tensor,
                  masses: torch.Tensor) -> dict[str, float]:
    """Position-wise accuracy over annotated positions, and whole-row accuracy (padding
    included), isobaric tokens counting as equal (:func:`same_residue`)."""
    correct = same_residue(pred_tokens, true_tokens, masses.to(pred_tokens.device))
    return {
        "token_accuracy": float(correct[mask].float().mean()) if mask.any() else 0.0,
        "sequence_accuracy": float(correct.all(-1).float().mean()),
    }


def first_peptide(tokens: torch.Tensor) -> torch.Tensor:
    """Token rows (B, L) with everything from the first padding / stop token on set to padding."""
    return tokens * (tokens != 0).cumprod(-1)


def ppm_errors(pred_tokens, masses, precursor_mz, charge, isotope_errors=(0,)) -> torch.Tensor:
    """(B,) ppm error of the decoded predictions' precursor m/z (padding has mass 0): the
    one-candidate case of :func:`peptide_losses.decoding.candidate_ppm`."""
    return candidate_ppm(pred_tokens[:, None], masses, precursor_mz, charge, isotope_errors)[:, 0]