"""Annotated MS/MS spectra: MGF reading, de novo preprocessing, padded batches.

The reader maps each ``SEQ=`` annotation onto a :class:`Vocabulary` (bracket
notation ``C[Carbamidomethyl]`` and Casanovo / MassIVE-KB deltas ``M+15.995``,
``+42.011PEP``), and a batch carries that same vocabulary, so a loss built
from another vocabulary is caught instead of silently misreading indices.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, replace
from os import PathLike
from typing import Sequence

import numpy as np
import torch

from .constants import PROTON
from .mgf_errors import MGFFormatError, format_error, where
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
    """

    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: float
    charge: int
    sequence: str | None
    tokens: list[int] | None
    title: str


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
        if not 0 <= self.min_mz < self.max_mz:
            raise ValueError(f"need 0 <= min_mz < max_mz, got min_mz={self.min_mz}, max_mz={self.max_mz}")
        if self.remove_precursor_tol < 0:
            raise ValueError(f"remove_precursor_tol must be >= 0 Da, got {self.remove_precursor_tol}")
        if self.max_peaks < 1:
            raise ValueError(f"max_peaks must be >= 1, got {self.max_peaks}")
        if not 0 <= self.min_intensity < 1:
            raise ValueError(f"min_intensity must be in [0, 1), got {self.min_intensity}")

    def __call__(self, spectrum: Spectrum) -> Spectrum:
        """One spectrum filtered as :meth:`batch` filters a row."""
        mz, intensity, keep = self.batch(
            torch.from_numpy(np.asarray(spectrum.mz, dtype=np.float64))[None],
            torch.from_numpy(np.asarray(spectrum.intensity, dtype=np.float64))[None],
            None, torch.tensor([float(spectrum.precursor_mz)], dtype=torch.float64),
            torch.tensor([int(spectrum.charge)]), max_charge=int(spectrum.charge),
        )
        kept = int(keep.sum())
        return replace(spectrum, mz=mz[0, :kept].numpy(), intensity=intensity[0, :kept].numpy())

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


def _spectrum_from_entry(entry: dict, path, index: int, vocabulary: Vocabulary) -> Spectrum:
    """A :class:`Spectrum` from one pyteomics MGF entry; MGFFormatError naming it if unusable."""
    params = entry["params"]
    title = str(params.get("title", index))
    name = where(path, index, title)
    pepmass = params.get("pepmass")
    if not pepmass or pepmass[0] is None or not pepmass[0] > 0:
        raise MGFFormatError(f"{name}, PEPMASS: missing or not > 0")
    charges = params.get("charge")
    if not charges or len(charges) != 1 or int(charges[0]) < 1:
        raise MGFFormatError(f"{name}, CHARGE: must be one positive charge, got {charges!r}")
    mz = np.asarray(entry["m/z array"], dtype=np.float64)
    intensity = np.asarray(entry["intensity array"], dtype=np.float64)
    if not (np.isfinite(mz).all() and np.isfinite(intensity).all()):
        raise MGFFormatError(f"{name}, peak: m/z and intensities must be finite")
    for values, what in ((mz <= 0, "m/z must be > 0"), (intensity < 0, "intensities must be >= 0")):
        if values.any():
            raise MGFFormatError(f"{name}, peak: {what}, got m/z {mz[values][0]} intensity {intensity[values][0]}")
    order = np.argsort(mz, kind="stable")
    sequence = params.get("seq")
    tokens = None
    if sequence is not None:
        sequence = str(sequence)
        try:
            tokens = vocabulary.encode(sequence)
        except ValueError as err:
            raise UnknownTokenError(f"{name}, SEQ={sequence}: {err}") from None
    return Spectrum(mz[order], intensity[order], float(pepmass[0]), int(charges[0]), sequence, tokens, title)


def _entries(path):
    """(index, pyteomics entry) of every spectrum; MGFFormatError naming the spectrum, field and line
    where pyteomics cannot read one."""
    from pyteomics import mgf
    from pyteomics.auxiliary import PyteomicsError

    end = object()
    with mgf.read(str(path), use_index=False, read_charges=False) as reader:
        entries = iter(reader)
        index = 0
        while True:
            try:
                entry = next(entries, end)
            except (PyteomicsError, ValueError) as err:
                raise format_error(path, index, str(err)) from None
            if entry is end:
                return
            # A spectrum without END IONS comes back as None, a one-column peak line as arrays of two lengths.
            if entry is None or len(entry["m/z array"]) != len(entry["intensity array"]):
                raise format_error(path, index, "pyteomics could not read this spectrum")
            yield index, entry
            index += 1


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
        The spectra in file order.

    Raises:
        MGFFormatError (a ValueError) for a malformed file: a spectrum cut off
        before END IONS, an unreadable CHARGE or PEPMASS, a peak line that is
        not two numbers, m/z <= 0, negative or non-finite intensities. The
        message names the file, the spectrum (0-based index and TITLE), the
        field and, where one is at fault, its line.
    """
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
    spectra, skipped = [], []
    for index, entry in _entries(path):
        try:
            spectrum = _spectrum_from_entry(entry, path, index, vocabulary)
        except UnknownTokenError as err:
            if unknown == "error":
                raise
            skipped.append(str(err))
            continue
        spectra.append(preprocessing(spectrum) if preprocessing is not None else spectrum)
    if skipped:
        message = f"{path}: skipped {len(skipped)} spectra with tokens outside the vocabulary; first: {skipped[0]}"
        log.warning(message)
        warnings.warn(message, stacklevel=2)
    return spectra


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


def collate(
    spectra: Sequence[Spectrum],
    vocabulary: Vocabulary,
    max_length: int | None = None,
    max_peaks: int | None = None,
) -> SpectrumBatch:
    """Pad spectra into a :class:`SpectrumBatch`.

    Args:
        spectra: the spectra; their ``tokens`` must index ``vocabulary``.
        vocabulary: the vocabulary of the tokens, carried by the batch.
        max_length: L (default the longest annotation); a longer annotation
            is a ValueError naming the spectrum.
        max_peaks: N (default the most peaks); spectra with more peaks keep
            their ``max_peaks`` most intense, in m/z order.
    """
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
    if len(spectra) == 0:
        raise ValueError("spectra must hold at least one spectrum")
    lengths = [len(s.tokens) if s.tokens is not None else 0 for s in spectra]
    length = max(lengths) if max_length is None else int(max_length)
    n_peaks = max(len(s.mz) for s in spectra) if max_peaks is None else int(max_peaks)
    if length < 0 or n_peaks < 0:
        raise ValueError(f"max_length and max_peaks must be >= 0, got {max_length}, {max_peaks}")
    batch = len(spectra)
    mz = np.zeros((batch, n_peaks), dtype=np.float32)
    intensity = np.zeros((batch, n_peaks), dtype=np.float32)
    peak_mask = np.zeros((batch, n_peaks), dtype=bool)
    tokens = np.zeros((batch, length), dtype=np.int64)
    for b, s in enumerate(spectra):
        if lengths[b] > length:
            raise ValueError(f"spectrum {b} (TITLE={s.title}) has {lengths[b]} tokens, more than max_length={length}")
        if s.tokens is not None:
            bad = [t for t in s.tokens if not 0 < t < len(vocabulary)]
            if bad:
                raise ValueError(f"spectrum {b} (TITLE={s.title}) has token indices {bad} outside the vocabulary")
            tokens[b, : lengths[b]] = s.tokens
        keep = np.arange(len(s.mz))
        if len(s.mz) > n_peaks:
            keep = np.sort(np.argsort(-s.intensity, kind="stable")[:n_peaks])
        mz[b, : len(keep)] = s.mz[keep]
        intensity[b, : len(keep)] = s.intensity[keep]
        peak_mask[b, : len(keep)] = True
    tokens_t = torch.from_numpy(tokens)
    return SpectrumBatch(
        mz=torch.from_numpy(mz),
        intensity=torch.from_numpy(intensity),
        peak_mask=torch.from_numpy(peak_mask),
        precursor_mz=torch.tensor([s.precursor_mz for s in spectra], dtype=torch.float64),
        charge=torch.tensor([s.charge for s in spectra], dtype=torch.int64),
        tokens=tokens_t,
        mask=tokens_t != 0,
        vocabulary=vocabulary,
    )
