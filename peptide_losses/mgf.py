"""MGF files read line by line: each spectrum's fields and peaks, checked, with the lines they came from.

The reader decodes the bytes itself, so that it follows the error model of
:mod:`peptide_losses.checks` for files: every error is an
:class:`~peptide_losses.mgf_errors.MGFFormatError` whose message starts with
the file and names the spectrum (0-based index and TITLE), the field and its
line, or the byte that is not text.

- Text is UTF-8 (ASCII included); a byte-order mark is skipped. Anything else
  (UTF-16, a compressed or binary file) is an error naming the line and byte.
- ``BEGIN IONS`` / ``END IONS`` are read in any case. A file without
  ``BEGIN IONS`` (a CSV, an XML, an empty file) holds no spectrum: an error.
- ``KEY=value`` lines before the first spectrum are the file's header: they
  apply to every spectrum that does not set the key itself (as pyteomics reads
  them). Keys are case-insensitive. A key given twice in one spectrum (or in
  the header), and a PEPMASS charge other than CHARGE, are errors: no value
  silently wins. Lines starting with ``#;!/`` and blank lines are comments.
- Anything else outside a spectrum (a peak line after ``END IONS``) would be
  dropped: an error.
"""

from __future__ import annotations

import math
from os import PathLike
from typing import Iterator, NamedTuple

import numpy as np

from .constants import PROTON
from .mgf_errors import MGFFormatError, where

COMMENTS = "#;!/"


class Field(NamedTuple):
    """A ``KEY=value`` line: the value (stripped) and its 1-based line number."""

    value: str
    line: int


class Record(NamedTuple):
    """One spectrum of an MGF file, its values checked.

    Attributes:
        index: 0-based position in the file.
        title: its TITLE, or its index if it has none.
        mz, intensity: (n,) float64 peaks in ascending m/z; m/z finite > 0,
            intensities finite >= 0.
        precursor_mz: PEPMASS, finite > 0. charge: the one precursor charge, >= 1.
        sequence: the SEQ field (non-empty), or None.
    """

    index: int
    title: str
    mz: np.ndarray
    intensity: np.ndarray
    precursor_mz: float
    charge: int
    sequence: Field | None


def _lines(path: str | PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) of each line that is not blank or a comment."""
    with open(path, "rb") as file:
        offset = 0
        for number, raw in enumerate(file, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise MGFFormatError(
                    f"{path}: line {number}, byte {offset + err.start}: not UTF-8 text ({err.reason}); an MGF file "
                    "is UTF-8 or ASCII text (not UTF-16, compressed or binary)") from None
            offset += len(raw)
            text = text.removeprefix("\ufeff").strip() if number == 1 else text.strip()
            if text and text[0] not in COMMENTS:
                yield number, text


def _fields(lines: list[tuple[int, str]]) -> tuple[dict[str, Field], tuple[str, int, int] | None]:
    """The ``KEY=value`` lines as upper-case key -> field, and the first key given twice as
    (key, its first line, its second line), or None."""
    fields: dict[str, Field] = {}
    for number, text in lines:
        key, _, value = text.partition("=")
        key = key.strip().upper()
        if key in fields:
            return fields, (key, fields[key].line, number)
        fields[key] = Field(value.strip(), number)
    return fields, None


def _twice(name: str, duplicate: tuple[str, int, int]) -> MGFFormatError:
    key, first, second = duplicate
    return MGFFormatError(f"{name}, line {second}, {key}: given twice (first on line {first}); which one holds "
                          "is unknown")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _charge(name: str, key: str, text: str, line: int) -> int:
    """The one precursor charge >= 1 of a CHARGE value (``2+``, ``+2``, ``2``)."""
    # pyteomics is imported where a file is read (importing the package needs none).
    from pyteomics.auxiliary import ChargeList, PyteomicsError

    try:
        charges = ChargeList(text)
    except (PyteomicsError, ValueError):
        raise MGFFormatError(f"{name}, line {line}, {key}: not a charge such as 2+: {text!r}") from None
    if len(charges) != 1 or charges[0] < 1:
        raise MGFFormatError(f"{name}, line {line}, {key}: must be one positive charge, got {text!r}")
    return int(charges[0])


def _precursor(name: str, fields: dict[str, Field]) -> tuple[float, int]:
    """PEPMASS (m/z [intensity] [charge]) and CHARGE: the precursor m/z and its one charge."""
    pepmass = fields.get("PEPMASS")
    if pepmass is None:
        raise MGFFormatError(f"{name}, PEPMASS: missing")
    columns = pepmass.value.split()
    if not 1 <= len(columns) <= 3 or not all(_is_number(c) for c in columns[:2]):
        raise MGFFormatError(f"{name}, line {pepmass.line}, PEPMASS: not a number (m/z [intensity] [charge]): "
                             f"{pepmass.value!r}")
    mz = float(columns[0])
    if not (math.isfinite(mz) and mz > 0):
        raise MGFFormatError(f"{name}, line {pepmass.line}, PEPMASS: the m/z must be finite and > 0, got "
                             f"{pepmass.value!r}")
    if mz <= PROTON:
        raise MGFFormatError(f"{name}, line {pepmass.line}, PEPMASS: the m/z must exceed a proton's ({PROTON:.5f}): "
                             f"a peptide's neutral mass, (m/z - proton) x charge, is > 0; got {pepmass.value!r}")
    given = fields.get("CHARGE")
    if given is None and len(columns) < 3:
        raise MGFFormatError(f"{name}, CHARGE: missing (no CHARGE line and no charge in PEPMASS)")
    charge = None if given is None else _charge(name, "CHARGE", given.value, given.line)
    if len(columns) == 3:
        in_pepmass = _charge(name, "PEPMASS", columns[2], pepmass.line)
        if charge is not None and charge != in_pepmass:
            raise MGFFormatError(f"{name}, line {pepmass.line}, PEPMASS: charge {in_pepmass} contradicts CHARGE "
                                 f"{charge} (line {given.line})")
        charge = in_pepmass
    return mz, charge


def _peaks(name: str, lines: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(m/z, intensity) of the peak lines, in ascending m/z."""
    # Well-formed peaks in one numpy conversion (a line at a time in Python, reading took as long as
    # decoding on a GPU); anything it refuses or finds out of range goes to the line-by-line reading,
    # which names the line.
    try:
        table = np.array([text.split()[:2] for _, text in lines], dtype=np.float64)
    except ValueError:
        table = None
    if (table is None or table.shape != (len(lines), 2) or not np.isfinite(table).all()
            or not (table[:, 0] > 0).all() or not (table[:, 1] >= 0).all()):
        mz, intensity = _peaks_line_by_line(name, lines)
    else:
        mz, intensity = table[:, 0].copy(), table[:, 1].copy()
    order = np.argsort(mz, kind="stable")
    return mz[order], intensity[order]


def _peaks_line_by_line(name: str, lines: list[tuple[int, str]]) -> tuple[np.ndarray, np.ndarray]:
    """(m/z, intensity) of the peak lines in file order; MGFFormatError naming the first bad line."""
    mz, intensity = np.empty(len(lines)), np.empty(len(lines))
    for i, (number, text) in enumerate(lines):
        columns = text.split()
        if len(columns) < 2:
            raise MGFFormatError(f"{name}, line {number}, peak: needs m/z and intensity, got {text!r}")
        if not (_is_number(columns[0]) and _is_number(columns[1])):
            raise MGFFormatError(f"{name}, line {number}, peak: m/z and intensity must be numbers, got {text!r}")
        mz[i], intensity[i] = float(columns[0]), float(columns[1])
        if not (math.isfinite(mz[i]) and mz[i] > 0):
            raise MGFFormatError(f"{name}, line {number}, peak: m/z must be > 0 and finite, got {text!r}")
        if not (math.isfinite(intensity[i]) and intensity[i] >= 0):
            raise MGFFormatError(f"{name}, line {number}, peak: intensity must be >= 0 and finite, got {text!r}")
    return mz, intensity


def _title(lines: list[tuple[int, str]], header: dict[str, Field], index: int) -> str:
    """The spectrum's TITLE (the header's, if it has none of its own), else its index."""
    for _, text in lines:
        key, equals, value = text.partition("=")
        if equals and key.strip().upper() == "TITLE":
            return value.strip()
    return header["TITLE"].value if "TITLE" in header else str(index)


def _record(path, index: int, lines: list[tuple[int, str]], header: dict[str, Field]) -> Record:
    title = _title(lines, header, index)
    name = where(path, index, title)
    own, duplicate = _fields([line for line in lines if "=" in line[1]])
    if duplicate is not None:
        raise _twice(name, duplicate)
    fields = {**header, **own}
    retention = fields.get("RTINSECONDS")  # not used here, but garbage there means a broken file
    if retention is not None and not _is_number(retention.value):
        raise MGFFormatError(f"{name}, line {retention.line}, RTINSECONDS: not a number: {retention.value!r}")
    sequence = fields.get("SEQ")
    if sequence is not None and not sequence.value:
        raise MGFFormatError(f"{name}, line {sequence.line}, SEQ: empty (leave SEQ out for an unannotated spectrum)")
    precursor_mz, charge = _precursor(name, fields)
    mz, intensity = _peaks(name, [line for line in lines if "=" not in line[1]])
    return Record(index, title, mz, intensity, precursor_mz, charge, sequence)


def _header(path, lines: list[tuple[int, str]]) -> dict[str, Field]:
    """The file's header fields (the lines before the first BEGIN IONS)."""
    for number, text in lines:
        if "=" not in text:
            raise MGFFormatError(f"{path}: line {number}: {text!r} before the first BEGIN IONS is not a KEY=value "
                                 "header line")
    fields, duplicate = _fields(lines)
    if duplicate is not None:
        raise _twice(f"{path}: header", duplicate)
    return fields


def read_records(path: str | PathLike) -> Iterator[Record]:
    """Every spectrum of an MGF file, in file order; MGFFormatError (see the module) where it cannot be read."""
    before: list[tuple[int, str]] = []
    header = None
    block = None  # (line of BEGIN IONS, its lines) while inside a spectrum
    index = 0
    for number, text in _lines(path):
        keyword = text.upper()
        if keyword == "BEGIN IONS":
            if block is not None:
                break
            header = _header(path, before) if header is None else header
            block = (number, [])
        elif keyword == "END IONS":
            if block is None:
                raise MGFFormatError(f"{path}: line {number}: END IONS without a BEGIN IONS before it")
            yield _record(path, index, block[1], header)
            index, block = index + 1, None
        elif block is not None:
            block[1].append((number, text))
        elif header is None:
            before.append((number, text))
        else:
            raise MGFFormatError(f"{path}: line {number}: {text!r} is outside a spectrum (after END IONS, before "
                                 "BEGIN IONS); it would be dropped")
    if block is not None:
        name = where(path, index, _title(block[1], header, index))
        raise MGFFormatError(f"{name}, from line {block[0]}: no END IONS before the next spectrum or the end of "
                             "the file (cut off?)")
    if header is None:
        raise MGFFormatError(f"{path}: holds no spectrum (no BEGIN IONS line): not an MGF file, or an empty one")
