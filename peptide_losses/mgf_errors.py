"""Clear errors for malformed MGF files: the file, the spectrum (index and TITLE), the field and the line.

pyteomics parses the files (:func:`peptide_losses.spectra.read_mgf`). When it
fails its message names neither the spectrum nor, for a bad ``CHARGE``, the
line; a file cut off inside a spectrum or a peak line with one column gives
no error at all, only a broken entry. On such a failure the reader reads that
spectrum's lines again here and names what is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike


class MGFFormatError(ValueError):
    """A malformed MGF file; the message names the file, the spectrum (0-based index and TITLE) and,
    where one is at fault, the field and its line."""


@dataclass
class SpectrumLines:
    """One spectrum's lines as (1-based line number, text), after BEGIN IONS."""

    begin: int
    lines: list[tuple[int, str]] = field(default_factory=list)
    ended: bool = False  # an END IONS closes it

    @property
    def title(self) -> str | None:
        for _, text in self.lines:
            key, _, value = text.strip().partition("=")
            if key.strip().upper() == "TITLE":
                return value.strip()
        return None


def spectrum_lines(path: str | PathLike, index: int) -> SpectrumLines | None:
    """The ``index``-th (0-based) spectrum of the file, up to its END IONS, the next BEGIN IONS or the
    end of the file; None if the file has fewer spectra."""
    found = None
    count = -1
    with open(path, encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if text == "BEGIN IONS":
                count += 1
                if found is not None:
                    break
                if count == index:
                    found = SpectrumLines(number)
            elif found is not None:
                if text == "END IONS":
                    found.ended = True
                    break
                found.lines.append((number, line.rstrip("\r\n")))
    return found


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _charge(text: str) -> bool:
    # pyteomics is imported where a file is read, as in spectra.read_mgf (importing the package needs none).
    from pyteomics.auxiliary import ChargeList, PyteomicsError

    try:
        ChargeList(text)
    except (PyteomicsError, ValueError):
        return False
    return True


#: Header fields pyteomics converts, and a check of their value.
_FIELDS = {
    "CHARGE": (_charge, "not a charge such as 2+"),
    "PEPMASS": (lambda value: bool(value.split()) and _number(value.split()[0]), "not a number"),
    "RTINSECONDS": (_number, "not a number"),
}


def first_problem(spectrum: SpectrumLines) -> tuple[int, str, str] | None:
    """(line number, field, what is wrong) of the spectrum's first unreadable line, or None."""
    for number, text in spectrum.lines:
        stripped = text.strip()
        if not stripped or stripped[0] in "#;!/":  # blank or a comment, as pyteomics skips them
            continue
        if "=" in stripped:
            key, _, value = stripped.partition("=")
            check = _FIELDS.get(key.strip().upper())
            if check is not None and not check[0](value.strip()):
                return number, key.strip().upper(), f"{check[1]}: {value.strip()!r}"
            continue
        columns = stripped.split()
        if len(columns) < 2:
            return number, "peak", f"needs m/z and intensity, got {stripped!r}"
        if not (_number(columns[0]) and _number(columns[1])):
            return number, "peak", f"m/z and intensity must be numbers, got {stripped!r}"
    return None


def where(path: str | PathLike, index: int, title: str | None) -> str:
    """How an error names a spectrum: ``FILE: spectrum INDEX (TITLE=...)``."""
    return f"{path}: spectrum {index} (TITLE={title if title is not None else '<none>'})"


def format_error(path: str | PathLike, index: int, reason: str) -> MGFFormatError:
    """The error for the ``index``-th spectrum, which the parser could not read (``reason``: what it said)."""
    spectrum = spectrum_lines(path, index)
    if spectrum is None:
        return MGFFormatError(f"{path}: after spectrum {index - 1}: {reason}")
    name = where(path, index, spectrum.title)
    if not spectrum.ended:
        return MGFFormatError(f"{name}, from line {spectrum.begin}: no END IONS before the next spectrum or the "
                              f"end of the file (cut off?)")
    problem = first_problem(spectrum)
    if problem is None:
        return MGFFormatError(f"{name}, from line {spectrum.begin}: {reason}")
    number, what, detail = problem
    return MGFFormatError(f"{name}, line {number}, {what}: {detail}")
