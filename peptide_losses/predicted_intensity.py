"""The judge's intensity evidence: how well ms2pip's predicted b/y intensities of a candidate correlate
with the observed peaks, the feature that tells a peptide from its near-twins on real spectra.

For each candidate, ms2pip 4.1.2 (HCD2019, offline; the ``simulate`` extra) predicts the singly
charged b and y intensities of its residues (modifications are not passed: ms2pip's model of the
unmodified peptide, as the simulator uses it). Each ion's m/z, modifications included, is looked
up among the observed peaks: the nearest within ``tolerance`` m/z gives its intensity, else 0.
The feature is the Pearson correlation of the square roots of the predicted intensities with
the observed ones (the preprocessed spectra hold square-rooted intensities already); 0 where
either side is constant. In a cross-validated probe on real spectra this one feature lifted a
judge's pooled recall from 0.153 to 0.231.
"""

from __future__ import annotations

import functools
import importlib.util
import warnings

import numpy as np
import torch

from .constants import H2O, PROTON
from .features import residue_rows
from .vocabulary import Vocabulary

#: The intensity feature of a judge by the predictor behind it: ms2pip (the ``simulate`` extra, on the
#: CPU) or the package's own model distilled from it (:mod:`peptide_losses.intensity_model`, any device).
SOURCES = {"ms2pip": "ms2pip_correlation", "model": "model_correlation"}
TOLERANCE = 0.02
#: ms2pip's shortest and longest peptides (it returns nothing for others: the feature is then 0).
LENGTHS = (2, 100)


def available() -> bool:
    """ms2pip can be imported (``pip install -e ".[simulate]"``)."""
    return importlib.util.find_spec("ms2pip") is not None


def _check_known(source: str, where: str = "") -> None:
    if source not in SOURCES:
        raise ValueError(f"{where}unknown intensity predictor {source!r}: one of {', '.join(SOURCES)}")


def check_source(source: str, where: str = "") -> None:
    """ValueError (prefixed by ``where``) for an unknown source, or ms2pip where it is not installed (to
    fit a judge on ms2pip's feature, which needs ms2pip's own predictions)."""
    _check_known(source, where)
    if source == "ms2pip" and not available():
        raise ValueError(f"{where}this judge reads ms2pip's predicted intensities, and ms2pip is not installed "
                         "(pip install -e '.[simulate]'); the package's own model needs none (--intensities model)")


@functools.cache
def _stand_in_for_ms2pip() -> str:
    warnings.warn("ms2pip is not installed (pip install -e '.[simulate]'): the judge's ms2pip_correlation is "
                  "computed with the package's intensity model, distilled from ms2pip, instead", stacklevel=3)
    return "model"


def predictor(source: str) -> str:
    """The predictor that computes ``source``'s feature here: ``source`` itself, except ms2pip where it
    is not installed: then the package's own model, which follows ms2pip (median Pearson 0.968 with its
    predictions on held-out peptides), so a judge fitted on ms2pip's feature still runs; a warning says
    so, once per process. ValueError for an unknown source."""
    _check_known(source)
    return _stand_in_for_ms2pip() if source == "ms2pip" and not available() else source


def source_correlations(source: str, tokens: torch.Tensor, valid: torch.Tensor, vocabulary: Vocabulary,
                        mz: torch.Tensor, intensity: torch.Tensor, peak_mask: torch.Tensor,
                        charge: torch.Tensor) -> torch.Tensor:
    """(B, K) the intensity feature of ``source`` (:data:`SOURCES`, computed by :func:`predictor`):
    :func:`correlations` with ms2pip, or :func:`model_correlations` with the shipped model on the tensors'
    device."""
    if predictor(source) == "ms2pip":
        return correlations(tokens, valid, vocabulary, mz, intensity, peak_mask, charge)
    return model_correlations(tokens, valid, vocabulary, mz, intensity, peak_mask, charge)


def _peptides(tokens: torch.Tensor, vocabulary: Vocabulary) -> list[tuple[str, list[float]]]:
    """Per row (R, L): its residue letters and residue masses, an N-terminal modification folded
    into the first residue."""
    out = []
    for row in tokens.tolist():
        letters, masses, opening = [], [], 0.0
        for index in row:
            token = vocabulary.tokens[index]
            if vocabulary.is_special(token):
                continue
            if vocabulary.is_n_terminal(token):
                opening += vocabulary.masses[index]
                continue
            letters.append(token[0])
            masses.append(vocabulary.masses[index] + (opening if not masses else 0.0))
        out.append(("".join(letters), masses))
    return out


def correlations(tokens: torch.Tensor, valid: torch.Tensor, vocabulary: Vocabulary, mz: torch.Tensor,
                 intensity: torch.Tensor, peak_mask: torch.Tensor, charge: torch.Tensor,
                 predictor=None) -> torch.Tensor:
    """(B, K) float32 correlation of each valid candidate (token rows (B, K, L)) with its spectrum
    (peaks (B, N), precursor ``charge`` (B,)); 0 for invalid candidates. ``predictor``: as
    :func:`peptide_losses.train.intensities.ms2pip_predictor` returns (default: that one)."""
    from .train.intensities import ms2pip_predictor

    predictor = predictor or ms2pip_predictor()
    batch, k, length = tokens.shape
    peptides = _peptides(tokens.reshape(batch * k, length).cpu(), vocabulary)
    rows = [r for r in range(batch * k) if bool(valid.reshape(-1)[r]) and
            LENGTHS[0] <= len(peptides[r][0]) <= LENGTHS[1]]
    charges = charge.cpu().tolist()
    predicted = predictor([(peptides[r][0], int(charges[r // k])) for r in rows]) if rows else []
    peaks = torch.where(peak_mask, mz.double(), torch.inf).cpu()
    order = peaks.argsort(-1)
    peaks, heights = peaks.gather(-1, order).numpy(), intensity.double().cpu().gather(-1, order).numpy()
    out = torch.zeros(batch * k, dtype=torch.float32)
    for r, ions in zip(rows, predicted):
        if ions is None:
            continue
        masses = np.cumsum(peptides[r][1])
        b_mz = masses[:-1] + PROTON
        y_mz = masses[-1] - masses[:-1][::-1] + H2O + PROTON  # y_1 .. y_{n-1}
        expected = np.sqrt(np.clip(np.exp2(np.concatenate([ions["b"], ions["y"]])) - 0.001, 0, None))
        observed = _nearest(peaks[r // k], heights[r // k], np.concatenate([b_mz, y_mz]))
        if expected.std() > 0 and observed.std() > 0:
            out[r] = float(np.corrcoef(expected, observed)[0, 1])
    return out.view(batch, k).to(tokens.device)


def _nearest(peaks: np.ndarray, heights: np.ndarray, ions: np.ndarray) -> np.ndarray:
    """The intensity of the nearest peak (ascending ``peaks``, +inf padding) within TOLERANCE of each ion, else 0."""
    if len(peaks) == 0:
        return np.zeros(len(ions))
    index = np.clip(np.searchsorted(peaks, ions), 1, len(peaks) - 1) if len(peaks) > 1 else np.zeros(len(ions), int)
    left = np.clip(index - 1, 0, None)
    pick = np.where(np.abs(peaks[left] - ions) <= np.abs(peaks[index] - ions), left, index)
    return np.where(np.abs(peaks[pick] - ions) <= TOLERANCE, heights[pick], 0.0)


@functools.lru_cache(maxsize=4)
def _shipped_model(device: torch.device):
    from .intensity_model import load

    return load(device=device)


@torch.no_grad()
def model_correlations(tokens: torch.Tensor, valid: torch.Tensor, vocabulary: Vocabulary, mz: torch.Tensor,
                       intensity: torch.Tensor, peak_mask: torch.Tensor, charge: torch.Tensor,
                       model=None) -> torch.Tensor:
    """:func:`correlations` with the package's intensity ``model`` (default: the shipped one), every
    candidate at once on the tensors' device, no host sync: the same ions, peak lookup and Pearson
    correlation of square roots, 0 where invalid, outside :data:`LENGTHS` or constant."""
    from .intensity_model import LETTERS, log_distribution

    device = tokens.device
    model = _shipped_model(device) if model is None else model
    batch, k, length = tokens.shape
    rows = tokens.reshape(batch * k, length)
    letter_of = torch.zeros(len(vocabulary), dtype=torch.long)
    for index, token in enumerate(vocabulary.tokens):
        if not vocabulary.is_special(token) and not vocabulary.is_n_terminal(token):
            letter_of[index] = LETTERS.index(token[0]) + 1
    shifted, residue, _ = residue_rows(rows, vocabulary.mass_tensor(device=device),
                                       vocabulary.start_only_mask(device=device))
    letters = letter_of.to(device)[shifted]
    n = (letters != 0).sum(-1)
    z = charge.repeat_interleave(k).long()
    shares = log_distribution(model(letters, z)).exp().double()  # (R, 2, L - 1): b_{l+1}, y_{n-l-1}
    prefix = residue.cumsum(-1)[:, :-1]  # slot l: b_{l+1}, and y_{n-l-1} weighs the rest
    ions = torch.stack([prefix + PROTON, residue.sum(-1, keepdim=True) - prefix + H2O + PROTON], 1)
    peaks = torch.where(peak_mask, mz.double(), torch.inf)
    order = peaks.argsort(-1)
    peaks = peaks.gather(-1, order).repeat_interleave(k, 0)
    heights = intensity.double().gather(-1, order).repeat_interleave(k, 0)
    observed = _nearest_torch(peaks, heights, ions.flatten(1)).view_as(shares)
    slot = (torch.arange(length - 1, device=device)[None, :] < (n - 1)[:, None])[:, None, :].expand_as(shares)
    expected = torch.where(slot, shares, 0.0).sqrt()
    count = slot.flatten(1).sum(-1).clamp_min(1)

    def centred(x):
        x = x.flatten(1)
        return torch.where(slot.flatten(1), x - x.sum(-1, keepdim=True) / count[:, None], 0.0)

    e, o = centred(expected), centred(torch.where(slot, observed, 0.0))
    spread = e.square().sum(-1) * o.square().sum(-1)
    r = (e * o).sum(-1) / spread.sqrt().clamp_min(1e-300)
    ok = valid.reshape(-1) & (n >= LENGTHS[0]) & (n <= LENGTHS[1]) & (spread > 0)
    return torch.where(ok, r, 0.0).float().view(batch, k)


def _nearest_torch(peaks: torch.Tensor, heights: torch.Tensor, ions: torch.Tensor) -> torch.Tensor:
    """:func:`_nearest` for rows at once: (R, N) ascending peaks (+inf padding) and heights, ions (R, M)."""
    n = peaks.shape[-1]
    if n == 0:
        return torch.zeros_like(ions)
    index = torch.searchsorted(peaks, ions.contiguous()).clamp(1, n - 1) if n > 1 else torch.zeros_like(ions).long()
    left = (index - 1).clamp_min(0)
    left_d, right_d = (peaks.gather(-1, left) - ions).abs(), (peaks.gather(-1, index) - ions).abs()
    pick = torch.where(left_d <= right_d, left, index)
    close = (peaks.gather(-1, pick) - ions).abs() <= TOLERANCE
    return torch.where(close, heights.gather(-1, pick), 0.0)
