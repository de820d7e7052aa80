"""PSMs as mzTab 1.0 files, written the way de novo tools write them, read through pyteomics.

As Casanovo 5.2 writes them: the residues in ``sequence``, the modifications in
``modifications`` (mzTab's ``position-UNIMOD:N``), the whole peptidoform in ProForma
(``[Acetyl]-PEPM[Oxidation]K``) in :data:`PROFORMA_COLUMN` (the PSI-MS term
MS:1003169, "proforma peptidoform sequence"), the tool's confidence in
``search_engine_score[1]`` (higher = better), one row per candidate, several per
spectrum when asked for the top K; ``spectra_ref`` names the spectrum as
``ms_run[1]:index=N`` (MGF) or ``ms_run[1]:<native ID>`` (mzML). :func:`write_psms`
writes that layout; :func:`read_psms` reads any tool's PSM section with pyteomics,
taking the ProForma column where there is one (older tools put the modified peptide
into ``sequence`` itself).
"""

from __future__ import annotations

import math
import re
from os import PathLike
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

from .vocabulary import Vocabulary

#: Unimod accessions of the modifications the vocabulary names (``UNIMOD_DELTAS``).
UNIMOD_ACCESSIONS = {"Carbamidomethyl": 4, "Oxidation": 35, "Deamidated": 7, "Acetyl": 1, "Carbamyl": 5,
                     "Ammonia-loss": 385}
PSM_COLUMNS = ("sequence", "PSM_ID", "accession", "unique", "database", "database_version", "search_engine",
               "search_engine_score[1]", "modifications", "retention_time", "charge", "exp_mass_to_charge",
               "calc_mass_to_charge", "spectra_ref", "pre", "post", "start", "end",
               "opt_global_cv_MS:1003169_proforma_peptidoform_sequence", "opt_global_rank",
               "opt_global_model_log_prob", "opt_global_precursor_ppm", "opt_global_spectrum_score")
PROFORMA_COLUMN = "opt_global_cv_MS:1003169_proforma_peptidoform_sequence"
SCORE_COLUMN = "search_engine_score[1]"
NAMES = {f"UNIMOD:{number}": name for name, number in UNIMOD_ACCESSIONS.items()}


class MzTabError(ValueError):
    """An mzTab file that cannot be read as PSMs; the message names the file and the line."""


class PSM(NamedTuple):
    """One PSM row to write. ``ref``: the spectrum's reference within ms_run[1] (``index=3``);
    ``rank``: 1 for the best candidate of its spectrum."""

    proforma: str
    tokens: Sequence[int]
    ref: str
    rank: int
    charge: int
    exp_mz: float
    calc_mz: float
    score: float
    log_prob: float
    ppm: float
    spectrum_score: float


def _modification(token: str, vocabulary: Vocabulary) -> str | None:
    """mzTab's name of the modification in a token (``UNIMOD:35``, else ``CHEMMOD:+15.9949``), None if none."""
    name = re.fullmatch(r"[A-Z]?\[([^\[\]]+)\]-?", token)
    if name is None:
        return None
    if name.group(1) in UNIMOD_ACCESSIONS:
        return f"UNIMOD:{UNIMOD_ACCESSIONS[name.group(1)]}"
    base = token[0] if token[0].isalpha() else None
    delta = vocabulary.masses[vocabulary.index(token)] - (vocabulary.masses[vocabulary.index(base)]
                                                            if base in vocabulary else 0.0)
    return f"CHEMMOD:{delta:+.6f}"


def modifications(tokens: Sequence[int], vocabulary: Vocabulary) -> str:
    """mzTab's ``modifications`` cell: ``position-UNIMOD:N`` pairs (0 = N-terminus), or ``null``."""
    found, position = [], 0
    for index in tokens:
        token = vocabulary.tokens[index]
        if not vocabulary.is_n_terminal(token):
            position += 1
        mod = _modification(token, vocabulary)
        if mod is not None:
            found.append(f"{0 if vocabulary.is_n_terminal(token) else position}-{mod}")
    return ",".join(found) or "null"


def _number(value: float) -> str:
    return "null" if value is None or math.isnan(value) else ("INF" if value == math.inf else
                                                             "-INF" if value == -math.inf else f"{value:.6g}")


def write_psms(path: str | PathLike, psms: Iterable[PSM], vocabulary: Vocabulary, *, spectra_file: str | PathLike,
               software: str, description: str) -> int:
    """Write an mzTab 1.0 Identification file of ``psms``; returns the number of rows written.

    ``spectra_file`` becomes ``ms_run[1]-location`` (a file URI); ``software`` and
    ``description`` go into the metadata (the command and its settings).
    """
    mods = sorted({name for token in vocabulary.tokens[1:] if (name := _modification(token, vocabulary))})
    lines = [("MTD", "mzTab-version", "1.0.0"), ("MTD", "mzTab-mode", "Summary"),
             ("MTD", "mzTab-type", "Identification"), ("MTD", "description", description),
             ("MTD", "software[1]", f"[MS, MS:1001456, analysis software, {software}]"),
             ("MTD", "ms_run[1]-location", Path(spectra_file).resolve().as_uri()),
             ("MTD", "psm_search_engine_score[1]", "[MS, MS:1001143, search engine specific score for PSMs, ]"),
             ("MTD", "fixed_mod[1]", "[MS, MS:1002453, No fixed modifications searched, ]")]
    for i, mod in enumerate(mods or ["none"], start=1):
        value = "[MS, MS:1002454, No variable modifications searched, ]" if mod == "none" else (
            f"[UNIMOD, {mod}, {NAMES[mod]}, ]" if mod in NAMES else f"[, , {mod}, ]")
        lines.append(("MTD", f"variable_mod[{i}]", value))
    lines += [(), ("PSH", *PSM_COLUMNS)]
    count = 0
    for count, psm in enumerate(psms, start=1):
        # A residue token starts with its letter (``M[Oxidation]``); an N-terminal one with ``[``.
        residues = "".join(token[0] for token in map(vocabulary.tokens.__getitem__, psm.tokens) if token[0].isalpha())
        lines.append(("PSM", residues, str(count), "null", "null", "null", "null",
                      f"[MS, MS:1001456, analysis software, {software}]", _number(psm.score),
                      modifications(psm.tokens, vocabulary), "null", str(psm.charge), f"{psm.exp_mz:.6f}",
                      f"{psm.calc_mz:.6f}", f"ms_run[1]:{psm.ref}", "null", "null", "null", "null", psm.proforma,
                      str(psm.rank),
                      _number(psm.log_prob), _number(psm.ppm), _number(psm.spectrum_score)))
    Path(path).write_text("".join("\t".join(line) + "\n" for line in lines), encoding="utf-8")
    return count


class PSMRow(NamedTuple):
    """A PSM read back: its ``sequence`` (ProForma where the file has it), ``ref`` (spectra_ref without ``ms_run[1]:``), ``score``
    (search_engine_score[1], NaN where null) and the 1-based ``line`` of the file it stands on."""

    sequence: str
    ref: str
    score: float
    line: int


def psm_lines(path: str | PathLike) -> tuple[list[str], list[str], list[int]]:
    """The file's lines, the PSH header's columns, and the (0-based) indices of its PSM lines;
    MzTabError when it has no PSH header or a PSM line of another width."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise MzTabError(f"{path}: not UTF-8 text (byte {err.start})") from None
    header, rows = None, []
    for i, line in enumerate(lines):
        cells = line.split("\t")
        if cells[0] == "PSH":
            header = cells[1:]
        elif cells[0] == "PSM":
            if header is None:
                raise MzTabError(f"{path}, line {i + 1}: a PSM line before the PSH header")
            if len(cells) - 1 != len(header):
                raise MzTabError(f"{path}, line {i + 1}: {len(cells) - 1} cells, the PSH header has {len(header)}")
            rows.append(i)
    if header is None:
        raise MzTabError(f"{path}: no PSM section (no PSH line): not an mzTab file of PSMs")
    for column in ("sequence", "spectra_ref", SCORE_COLUMN):
        if column not in header:
            raise MzTabError(f"{path}: the PSH header has no {column} column")
    return lines, header, rows


class PSMFile(NamedTuple):
    """An mzTab file read for rewriting: its ``lines``, the PSH ``header``'s columns and its ``psms``."""

    lines: list[str]
    header: list[str]
    psms: list[PSMRow]


def read_psms(path: str | PathLike) -> list[PSMRow]:
    """Every PSM of an mzTab file in file order (:func:`read_psm_file`)."""
    return read_psm_file(path).psms


def read_psm_file(path: str | PathLike) -> PSMFile:
    """An mzTab file's lines, PSM header and PSMs in file order (pyteomics reads the section;
    MzTabError naming the file and line of a row without sequence or a spectra_ref outside ``ms_run[1]``)."""
    from pyteomics import mztab

    lines, header, rows = psm_lines(path)
    try:
        table = mztab.MzTab(str(path), table_format="dict").spectrum_match_table
    except Exception as err:  # pyteomics raises several kinds on a malformed file
        raise MzTabError(f"{path}: pyteomics cannot read it: {type(err).__name__}: {err}") from None
    out = []
    for k, number in enumerate(rows):
        row = table["rows"][k]
        sequence = row.get(PROFORMA_COLUMN) or row["sequence"]
        ref, score = row["spectra_ref"], row[SCORE_COLUMN]
        where = f"{path}, line {number + 1}"
        if not isinstance(sequence, str) or not sequence or sequence == "null":
            raise MzTabError(f"{where}: empty sequence")
        if not isinstance(ref, str) or not ref.startswith("ms_run[1]:"):
            raise MzTabError(f"{where}: spectra_ref {ref!r} is not ms_run[1]:<ref> (one spectra file per mzTab)")
        out.append(PSMRow(sequence, ref[len("ms_run[1]:"):], _score(score, where), number + 1))
    return PSMFile(lines, header, out)


def _score(value, where: str) -> float:
    """A score cell as a float: ``null`` (mzTab's missing value) is NaN; anything but a number or null is
    an error (read as NaN it would silently rank its PSM last)."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "null"):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MzTabError(f"{where}: {SCORE_COLUMN} {value!r} is not a number or null") from None


__all__ = ["PSM", "PSMFile", "PSMRow", "MzTabError", "modifications", "psm_lines", "read_psm_file", "read_psms",
           "write_psms"]
