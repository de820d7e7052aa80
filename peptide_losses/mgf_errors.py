"""How MGF errors name what is wrong: the file, the spectrum (index and TITLE), the field and the line.

:mod:`peptide_losses.mgf` reads the files and raises these errors; the other
spectra readers (:mod:`peptide_losses.spectra_files`) name spectra the same way.
"""

from __future__ import annotations

from os import PathLike


class MGFFormatError(ValueError):
    """A malformed MGF file; the message starts with the file and names the spectrum (0-based index and
    TITLE) and, where one is at fault, the field and its line (or the byte that is not text)."""


def where(path: str | PathLike, index: int, title: str | None) -> str:
    """How an error names a spectrum: ``FILE: spectrum INDEX (TITLE=...)``."""
    return f"{path}: spectrum {index} (TITLE={title if title is not None else '<none>'})"
