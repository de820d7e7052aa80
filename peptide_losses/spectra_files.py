"""Spectra files in (MGF, mzML), each spectrum with the reference that PSM files give it.

mzTab names a spectrum by ``spectra_ref = ms_run[1]:<ref>``: for an MGF the 0-based
position of the spectrum in the file (``index=3``), for an mzML the spectrum's native
ID (``controllerType=0 controllerNumber=1 scan=17``). :func:`read_spectra` returns
both the spectra and these references, and :func:`annotate` joins an ms2pip PEPREC
table onto an MGF's spectra by their ``TITLE``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .constants import PROTON
from .mgf_errors import MGFFormatError, where
from .peprec import read_peprec
from .spectra import Preprocessing, Spectrum, UnknownTokenError, read_mgf
from .vocabulary import Vocabulary

FORMATS = (".mgf", ".mzml")


class SpectraFileError(ValueError):
    """A spectra file that cannot be read as asked; the message names the file and the spectrum."""


class Indexed(NamedTuple):
    """A spectrum and its ``ref``: ``index=N`` in an MGF, the native ID in an mzML."""

    ref: str
    spectrum: Spectrum


def _mzml_spectrum(entry: dict, path, number: int) -> Spectrum:
    name = f"{path}: spectrum {number} (id={entry.get('id')})"
    try:
        ion = entry["precursorList"]["precursor"][0]["selectedIonList"]["selectedIon"][0]
    except (KeyError, IndexError):
        raise SpectraFileError(f"{name}: MS2 spectrum without a precursor") from None
    precursor, charge = ion.get("selected ion m/z"), ion.get("charge state")
    if precursor is None or not np.isfinite(precursor) or precursor <= 0:
        raise SpectraFileError(f"{name}: precursor m/z missing or not > 0 ({precursor!r})")
    if precursor <= PROTON:
        raise SpectraFileError(f"{name}: precursor m/z {precursor!r} does not exceed a proton's ({PROTON:.5f}): a "
                               "peptide's neutral mass, (m/z - proton) x charge, is > 0")
    if charge is None or int(charge) != charge or charge < 1:
        raise SpectraFileError(f"{name}: precursor charge missing or not a positive integer ({charge!r})")
    mz = np.asarray(entry["m/z array"], dtype=np.float64)
    intensity = np.asarray(entry["intensity array"], dtype=np.float64)
    if not (np.isfinite(mz).all() and np.isfinite(intensity).all()) or (mz <= 0).any() or (intensity < 0).any():
        raise SpectraFileError(f"{name}: peaks need finite m/z > 0 and finite intensities >= 0")
    order = np.argsort(mz, kind="stable")
    return Spectrum(mz[order], intensity[order], float(precursor), int(charge), None, None, str(entry.get("id")))


def _read_mzml(path: Path) -> list[Indexed]:
    # pyteomics reads mzML through psims (the PSI-MS vocabulary) and lxml: the "mzml" extra.
    if importlib.util.find_spec("psims") is None:
        raise SpectraFileError(f"{path}: reading mzML needs psims: pip install 'peptide_losses[mzml]'")
    from pyteomics import mzml

    out = []
    try:
        with mzml.read(str(path), use_index=False) as reader:
            for number, entry in enumerate(reader):
                if entry.get("ms level") == 2:
                    out.append(Indexed(str(entry["id"]), _mzml_spectrum(entry, path, number)))
    except SpectraFileError:
        raise
    except Exception as err:  # lxml and pyteomics raise many kinds for a broken file; each ends here
        raise SpectraFileError(f"{path}: not a readable mzML file: {type(err).__name__}: {err}") from None
    return out


def read_spectra(path: str | PathLike, vocabulary: Vocabulary,
                 preprocessing: Preprocessing | None = None) -> list[Indexed]:
    """Every MS2 spectrum of an MGF or mzML file, in file order, with its mzTab reference.

    Args:
        path: ``.mgf`` (``SEQ=`` annotations are read through ``vocabulary``) or ``.mzML``.
        vocabulary: the tokens of annotations.
        preprocessing: applied to each spectrum (None: peaks as in the file).

    Raises:
        FileNotFoundError for a missing path; SpectraFileError (a ValueError) for an unknown
        format, an empty file or one without spectra; MGFFormatError / UnknownTokenError
        for a bad spectrum, naming the file and the spectrum.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise SpectraFileError(f"{path}: unknown spectra format {path.suffix!r} (expected .mgf or .mzML)")
    if path.stat().st_size == 0:
        raise SpectraFileError(f"{path}: empty file")
    if suffix == ".mgf":
        spectra = [Indexed(f"index={i}", s) for i, s in enumerate(read_mgf(path, vocabulary))]
    else:
        spectra = _read_mzml(path)
    if not spectra:
        raise SpectraFileError(f"{path}: holds no MS2 spectrum")
    if preprocessing is not None:
        spectra = [Indexed(ref, s) for (ref, _), s in zip(spectra, preprocessing.many([s for _, s in spectra]))]
    return spectra


def annotate(spectra: list[Indexed], peprec: str | PathLike, vocabulary: Vocabulary, path=None) -> list[Indexed]:
    """The spectra with ``sequence`` and ``tokens`` from an ms2pip PEPREC table joined on TITLE;
    SpectraFileError naming the spectrum when its TITLE is not in the table or the charges differ."""
    table = read_peprec(peprec)
    out = []
    for number, (ref, spectrum) in enumerate(spectra):
        name = where(path or "spectra", number, spectrum.title)
        row = table.get(spectrum.title)
        if row is None:
            raise SpectraFileError(f"{name}: TITLE not found in {peprec}")
        if row.charge != spectrum.charge:
            raise SpectraFileError(f"{name}: charge {spectrum.charge} but {peprec} line {row.line} says {row.charge}")
        try:
            tokens = vocabulary.encode(row.sequence)
        except ValueError as err:
            raise UnknownTokenError(f"{name}, {peprec} line {row.line} ({row.sequence}): {err}") from None
        out.append(Indexed(ref, replace(spectrum, sequence=row.sequence, tokens=tokens)))
    return out


__all__ = ["FORMATS", "Indexed", "MGFFormatError", "SpectraFileError", "annotate", "read_spectra"]
