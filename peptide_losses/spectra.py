"""Annotated MS/MS spectra: MGF reading, de novo preprocessing, padded batches.

The reader maps each ``SEQ=`` annotation onto a :class:`Vocabulary` (bracket
notation ``C[Carbamidomethyl]`` and Casanovo / MassIVE-KB deltas ``M+15.995``,
``+42.011PEP``), and a batch carries that same vocabulary, so a loss built
from another vocabulary is caught instead of silently misreading indices; a
spectrum remembers the vocabulary its tokens index, so a batch built with
another one is caught too. Errors follow :mod:`peptide_losses.checks`.
"""

from __future__ import annotations

import logging
import math
import operator
import warnings
from dataclasses import dataclass, replace
from os import PathLike
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import torch

from .checks import check_flag, check_integer, check_number, check_sequence
from .constants import PROTON
from .mgf import read_records
from .mgf_errors import where
from .vocabulary import Vocabulary

log = logging.getLogger(__name__)

UNKNOWN_POLICIES = ("error", "skip")


class UnknownTokenError(ValueError):
    """An annotation holds a token outside the vocabulary (names spectrum and token)."""


@dataclass
class Spectrum:
    """One MS/MS spectrum.

    Attributes:
        mz: (n,) float64 peak m/z, ascending.
        intensity: (n,) float64 peak intensities >= 0.
        precursor_mz: observed precursor m/z.
        charge: precursor charge >= 1.
        sequence: the annotation as written in the file (``SEQ=``), or None.
        tokens: vocabulary indices of the annotation, or None.
        title: the spectrum's ``TITLE`` (its index in the file if absent).
        vocabulary_fingerprint: :attr:`Vocabulary.fingerprint` of the vocabulary
            ``tokens`` index (set by :func:`read_mgf`), or None if unknown;
            :func:`collate` rejects a batch vocabulary with another one (if
            ``tokens`` is set: without them there is nothing to misread).
    """

    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: float
    charge: int
    sequence: str | None
    tokens: list[int] | None
    title: str
    vocabulary_fingerprint: str | None = None


@dataclass
class Preprocessing:
    """Peak filtering as de novo tools do it (Casanovo / depthcharge defaults).

    In order: keep peaks with ``min_mz <= m/z <= max_mz`` (m/z); drop peaks
    within ``remove_precursor_tol`` Da of the precursor m/z at every charge
    1..precursor charge; drop peaks below ``min_intensity`` times the most
    intense one; keep the ``max_peaks`` most intense; take the square root of
    the intensities if ``sqrt``; divide by the largest so the top peak is 1.
    """

    min_mz: float = 50.0
    max_mz: float = 2500.0
    remove_precursor_tol: float = 2.0
    max_peaks: int = 150
    min_intensity: float = 0.01
    sqrt: bool = True

    def __post_init__(self) -> None:
        check_number("min_mz", self.min_mz, lambda x: 0 <= x < math.inf, "a finite m/z >= 0")
        check_number("max_mz", self.max_mz, lambda x: x > self.min_mz, f"an m/z > min_mz = {self.min_mz}")
        check_number("remove_precursor_tol", self.remove_precursor_tol, lambda x: 0 <= x < math.inf,
                     "a finite number >= 0 (Da)")
        self.max_peaks = check_integer("max_peaks", self.max_peaks, 1)
        check_number("min_intensity", self.min_intensity, lambda x: 0 <= x < 1, "a number in [0, 1)")
        check_flag("sqrt", self.sqrt)

    def __call__(self, spectrum: Spectrum) -> Spectrum:
        """One spectrum filtered as :meth:`batch` filters a row."""
        return self.many([spectrum])[0]

    def many(self, spectra: Sequence[Spectrum], chunk: int = 1024) -> list[Spectrum]:
        """Each spectrum filtered as :meth:`batch` filters a row, ``chunk`` spectra per call (rows do
        not interact: the same peaks as one at a time, which was most of the time it took to read a file)."""
        out: list[Spectrum] = []
        for start in range(0, len(spectra), chunk):
            part = spectra[start:start + chunk]
            width = max(1, max(len(s.mz) for s in part))  # a padding column where none has a peak
            mz, intensity = np.zeros((len(part), width)), np.zeros((len(part), width))
            valid = np.zeros((len(part), width), dtype=bool)
            for row, s in enumerate(part):
                n = len(s.mz)
                mz[row, :n], intensity[row, :n], valid[row, :n] = s.mz, s.intensity, True
            charges = [int(s.charge) for s in part]
            kept_mz, kept_intensity, keep = self.batch(
                torch.from_numpy(mz), torch.from_numpy(intensity), torch.from_numpy(valid),
                torch.tensor([float(s.precursor_mz) for s in part], dtype=torch.float64), torch.tensor(charges),
                max_charge=max(charges))
            counts = keep.sum(1).tolist()
            out += [replace(s, mz=kept_mz[row, :n].numpy(), intensity=kept_intensity[row, :n].numpy())
                    for row, (s, n) in enumerate(zip(part, counts))]
        return out

    def batch(self, mz: torch.Tensor, intensity: torch.Tensor, valid: torch.Tensor | None,
              precursor_mz: torch.Tensor, charge: torch.Tensor, *, max_charge: int):
        """Filter padded peak rows on their device, without a host sync.

        Args:
            mz, intensity: (B, n) float peak m/z and intensities, in any order.
            valid: (B, n) bool, True at real peaks (None: all real).
            precursor_mz: (B,) observed precursor m/z; charge: (B,) int precursor charge.
            max_charge: an upper bound of ``charge`` (a Python int, so that the
                loop over charges needs no device read).

        Returns:
            (mz, intensity, peak_mask), each (B, min(n, max_peaks)), the kept
            peaks first in ascending m/z, padding (m/z 0) after them.
        """
        if valid is None:
            valid = torch.ones_like(mz, dtype=torch.bool)
        # Ascending m/z first, so that the stable intensity sort below keeps the lower m/z of equals.
        mz, order = torch.sort(torch.where(valid, mz, torch.inf), dim=1, stable=True)
        intensity = intensity.gather(1, order)
        keep = (mz >= self.min_mz) & (mz <= self.max_mz)
        neutral = (precursor_mz.to(mz.dtype) - PROTON) * charge
        for z in range(1, max_charge + 1):
            near = (mz - ((neutral + z * PROTON) / z)[:, None]).abs() <= self.remove_precursor_tol
            keep &= ~(near & (charge >= z)[:, None])
        top = torch.where(keep, intensity, -torch.inf).amax(1, keepdim=True)
        keep &= intensity >= self.min_intensity * top
        # The max_peaks most intense (stable: lower m/z first among equals), back in m/z order.
        width = min(self.max_peaks, mz.shape[1])
        ranked = torch.sort(torch.where(keep, -intensity, torch.inf), dim=1, stable=True).indices[:, :width]
        picked = torch.sort(ranked, dim=1).values
        keep = keep.gather(1, picked)
        mz, intensity = mz.gather(1, picked), intensity.gather(1, picked)
        # Kept peaks are a prefix of the sorted rows only after pushing the dropped ones to the end.
        mz, order = torch.sort(torch.where(keep, mz, torch.inf), dim=1, stable=True)
        keep, intensity = keep.gather(1, order), intensity.gather(1, order)
        intensity = torch.where(keep, intensity, 0.0)
        if self.sqrt:
            intensity = intensity.sqrt()
        scale = intensity.amax(1, keepdim=True)
        intensity = torch.where(scale > 0, intensity / scale, intensity)
        return torch.where(keep, mz, 0.0), intensity, keep


def _tokens(record, path, vocabulary: Vocabulary) -> list[int] | None:
    """The record's SEQ as token indices (None without one); UnknownTokenError naming spectrum, line and token."""
    if record.sequence is None:
        return None
    try:
        return vocabulary.encode(record.sequence.value)
    except ValueError as err:
        name = where(path, record.index, record.title)
        raise UnknownTokenError(f"{name}, line {record.sequence.line}, SEQ={record.sequence.value}: {err}") from None


def read_mgf(
    path: str | PathLike,
    vocabulary: Vocabulary,
    *,
    unknown: str = "error",
    preprocessing: Preprocessing | None = None,
) -> list[Spectrum]:
    """Read an MGF file into :class:`Spectrum` objects.

    Args:
        path: the MGF file (``PEPMASS``, ``CHARGE``, optional ``TITLE``, ``SEQ``).
        vocabulary: maps ``SEQ=`` annotations to token indices.
        unknown: ``"error"``: an annotation with a token outside the
            vocabulary raises ValueError naming the spectrum and the token;
            ``"skip"``: such spectra are left out and their count is given
            in a ``UserWarning`` (and the log).
        preprocessing: applied to every spectrum (None: peaks as in the file).

    Returns:
        The spectra in file order; an annotated one carries the vocabulary's
        fingerprint (:attr:`Spectrum.vocabulary_fingerprint`).

    Raises:
        MGFFormatError (a ValueError) for a file that holds no spectrum or is
        not UTF-8 text, and for a malformed spectrum: cut off before END IONS,
        a missing, unreadable, duplicated or contradictory field (PEPMASS,
        CHARGE, an empty SEQ...), a peak line that is not two numbers, an m/z
        not finite or <= 0, an intensity not finite or < 0. The message starts
        with the file and names the spectrum (0-based index and TITLE), the
        field and its line (:mod:`peptide_losses.mgf`).
    """
    if not isinstance(path, (str, PathLike)):
        raise TypeError(f"path must be a str or os.PathLike (the MGF file), got {type(path).__name__}")
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
    if preprocessing is not None and not callable(preprocessing):
        raise TypeError(f"preprocessing must be a Preprocessing (or None), got {type(preprocessing).__name__}")
    fingerprint = vocabulary.fingerprint
    spectra, skipped = [], []
    for record in read_records(path):
        try:
            tokens = _tokens(record, path, vocabulary)
        except UnknownTokenError as err:
            if unknown == "error":
                raise
            skipped.append(str(err))
            continue
        spectrum = Spectrum(record.mz, record.intensity, record.precursor_mz, record.charge,
                            None if tokens is None else record.sequence.value, tokens, record.title,
                            None if tokens is None else fingerprint)
        spectra.append(spectrum)
    if skipped:
        message = f"{path}: skipped {len(skipped)} spectra with tokens outside the vocabulary; first: {skipped[0]}"
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    return spectra if preprocessing is None else preprocessing.many(spectra)


@dataclass
class SpectrumBatch:
    """Padded spectra and annotations, with the vocabulary the tokens index.

    Attributes:
        mz: (B, N) float32 peak m/z (0 at padding).
        intensity: (B, N) float32 intensities (0 at padding).
        peak_mask: (B, N) bool, True at real peaks.
        precursor_mz: (B,) float64 observed precursor m/z.
        charge: (B,) int64 precursor charge.
        tokens: (B, L) int64 token indices, 0 = padding (all 0 if unannotated).
        mask: (B, L) bool, True at annotated positions.
        vocabulary: what the token indices mean.
    """

    mz: torch.Tensor
    intensity: torch.Tensor
    peak_mask: torch.Tensor
    precursor_mz: torch.Tensor
    charge: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    vocabulary: Vocabulary

    def to(self, device) -> "SpectrumBatch":
        """The batch with every tensor on ``device``."""
        moved = {
            name: getattr(self, name).to(device)
            for name in ("mz", "intensity", "peak_mask", "precursor_mz", "charge", "tokens", "mask")
        }
        return SpectrumBatch(**moved, vocabulary=self.vocabulary)

    def __len__(self) -> int:
        return self.mz.shape[0]


class _Row(NamedTuple):
    """One spectrum of a batch, checked: float64 peaks, token indices (empty if unannotated), precursor."""

    mz: np.ndarray
    intensity: np.ndarray
    tokens: list[int]
    precursor_mz: float
    charge: int


def _peak_array(name: str, field: str, values) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: {field} must be a 1-D array of numbers, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name}: {field} must be a 1-D array of numbers, got shape {array.shape}")
    return array


def _is_token(index, size: int) -> bool:
    """An integer (any integer type, not 2.0) in 1..size-1: a residue's index, not padding."""
    try:
        return 0 < operator.index(index) < size
    except TypeError:
        return False


def _row(spectrum, b: int, vocabulary: Vocabulary) -> _Row:
    """``spectra[b]`` checked for a batch of ``vocabulary``; errors name the spectrum (index and TITLE).

    Bad values (a NaN m/z, a charge of 0) pass: the losses make their spectrum's loss NaN.
    """
    if not isinstance(spectrum, Spectrum):
        raise TypeError(f"spectra[{b}] must be a Spectrum, got {type(spectrum).__name__}")
    name = f"spectrum {b} (TITLE={spectrum.title})"
    written = spectrum.vocabulary_fingerprint
    # Without tokens there is nothing to misread (a decoder drops the annotation and keeps the rest).
    if spectrum.tokens is not None and written is not None and written != vocabulary.fingerprint:
        raise ValueError(f"{name}: its tokens index vocabulary {written}, not the batch's vocabulary "
                         f"{vocabulary.fingerprint}: the indices would mean other tokens; collate with the "
                         "vocabulary the spectra were read with")
    mz, intensity = (_peak_array(name, field, getattr(spectrum, field)) for field in ("mz", "intensity"))
    if mz.shape != intensity.shape:
        raise ValueError(f"{name}: mz and intensity differ in length ({len(mz)} vs {len(intensity)})")
    tokens = [] if spectrum.tokens is None else check_sequence(f"{name}: tokens", spectrum.tokens,
                                                                "a list of token indices")
    bad = [t for t in tokens if not _is_token(t, len(vocabulary))]
    if bad:
        raise ValueError(f"{name} has token indices {bad} outside the vocabulary (integers 1..{len(vocabulary) - 1})")
    precursor_mz = check_number(f"{name}: precursor_mz", spectrum.precursor_mz, lambda x: True, "a number")
    return _Row(mz, intensity, tokens, precursor_mz, check_integer(f"{name}: charge", spectrum.charge))


def collate(
    spectra: Iterable[Spectrum],
    vocabulary: Vocabulary,
    max_length: int | None = None,
    max_peaks: int | None = None,
) -> SpectrumBatch:
    """Pad spectra into a :class:`SpectrumBatch`.

    Args:
        spectra: the spectra (a list, or any iterable of :class:`Spectrum`);
            their ``tokens`` must index ``vocabulary``: a spectrum whose
            :attr:`~Spectrum.vocabulary_fingerprint` is another vocabulary's
            is a ValueError naming it.
        vocabulary: the vocabulary of the tokens, carried by the batch.
        max_length: L >= 0 (default the longest annotation); a longer annotation
            is a ValueError naming the spectrum.
        max_peaks: N >= 0 (default the most peaks); spectra with more peaks keep
            their ``max_peaks`` most intense, in m/z order.

    A spectrum that is not what it must be (peaks of two lengths, a charge that
    is not an integer, token indices outside the vocabulary) is an error naming
    it; bad values in it (:mod:`peptide_losses.checks`) pass to the losses.
    """
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
    spectra = check_sequence("spectra", spectra, "a list of Spectrum")
    rows = [_row(s, b, vocabulary) for b, s in enumerate(spectra)]
    if not rows:
        raise ValueError("spectra must hold at least one spectrum")
    length = max(len(r.tokens) for r in rows) if max_length is None else check_integer("max_length", max_length, 0)
    n_peaks = max(len(r.mz) for r in rows) if max_peaks is None else check_integer("max_peaks", max_peaks, 0)
    batch = len(rows)
    mz = np.zeros((batch, n_peaks), dtype=np.float32)
    intensity = np.zeros((batch, n_peaks), dtype=np.float32)
    peak_mask = np.zeros((batch, n_peaks), dtype=bool)
    tokens = np.zeros((batch, length), dtype=np.int64)
    for b, (s, row) in enumerate(zip(spectra, rows)):
        if len(row.tokens) > length:
            raise ValueError(f"spectrum {b} (TITLE={s.title}) has {len(row.tokens)} tokens, more than "
                             f"max_length={length}")
        tokens[b, : len(row.tokens)] = row.tokens
        keep = np.arange(len(row.mz))
        if len(row.mz) > n_peaks:
            keep = np.sort(np.argsort(-row.intensity, kind="stable")[:n_peaks])
        mz[b, : len(keep)] = row.mz[keep]
        intensity[b, : len(keep)] = row.intensity[keep]
        peak_mask[b, : len(keep)] = True
    tokens_t = torch.from_numpy(tokens)
    return SpectrumBatch(
        mz=torch.from_numpy(mz),
        intensity=torch.from_numpy(intensity),
        peak_mask=torch.from_numpy(peak_mask),
        precursor_mz=torch.tensor([r.precursor_mz for r in rows], dtype=torch.float64),
        charge=torch.tensor([r.charge for r in rows], dtype=torch.int64),
        tokens=tokens_t,
        mask=tokens_t != 0,
        vocabulary=vocabulary,
    )
