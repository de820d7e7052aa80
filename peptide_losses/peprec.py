"""ms2pip's PEPREC tables: peptide annotations beside an MGF, joined on the spectrum's TITLE.

A PEPREC file is a space- (or comma-, or tab-) separated table with the columns
``spec_id`` (the MGF's ``TITLE``), ``modifications`` (``position|name|position|name``,
position 0 = N-terminus, 1..n = residues, -1 = C-terminus; ``-`` for none), ``peptide``
and ``charge``. :func:`read_peprec` turns each row into a ProForma-style string that
:meth:`peptide_losses.Vocabulary.tokenize` reads (``[Acetyl]-PEPC[Carbamidomethyl]K``).
"""

from __future__ import annotations

import csv
from os import PathLike
from typing import NamedTuple

#: ms2pip's modification names as ProForma modifications. Names Unimod spells otherwise
#: (ms2pip's "Deamidation" is Unimod's "Deamidated") are translated.
NAMES = {"Carbamidomethyl": "Carbamidomethyl", "Oxidation": "Oxidation", "Deamidation": "Deamidated",
         "Acetyl": "Acetyl", "Carbamyl": "Carbamyl"}
#: Pyroglutamate is an N-terminal change of the first residue; as a ProForma N-terminal
#: delta (Da) it is the same mass whichever token a vocabulary names it by
#: (``[Ammonia-loss]-`` for Q in Casanovo's).
PYRO_GLU = {"Q": -17.026549, "E": -18.010565}
COLUMNS = ("spec_id", "modifications", "peptide", "charge")


class PeprecError(ValueError):
    """A malformed PEPREC table; the message names the file, the line and the field."""


class Annotation(NamedTuple):
    """One PEPREC row: ``sequence`` (ProForma-style), ``charge`` and its 1-based ``line``."""

    sequence: str
    charge: int
    line: int


def proforma(peptide: str, modifications: str) -> str:
    """``peptide`` with PEPREC ``modifications`` written in, ProForma-style; ValueError naming
    an unknown modification or a position outside the peptide."""
    if not peptide.isalpha() or not peptide.isupper():
        raise ValueError(f"peptide must be upper-case residue letters, got {peptide!r}")
    residues = list(peptide)
    n_term = ""
    fields = [] if modifications.strip() in ("", "-") else modifications.split("|")
    if len(fields) % 2:
        raise ValueError(f"modifications must be position|name pairs, got {modifications!r}")
    for position_text, name in zip(fields[::2], fields[1::2]):
        try:
            position = int(position_text)
        except ValueError:
            raise ValueError(f"modification position {position_text!r} is not an integer") from None
        if not 0 <= position <= len(residues):
            raise ValueError(f"modification {name} at position {position}: outside 0..{len(residues)} "
                             "(C-terminal modifications are not supported)")
        if name == "Pyro_glu":
            first = residues[0]
            if position > 1 or first not in PYRO_GLU:
                raise ValueError(f"Pyro_glu must sit on an N-terminal Q or E, got position {position} of {peptide}")
            n_term = f"[{PYRO_GLU[first]:+.6f}]-"
        elif name not in NAMES:
            raise ValueError(f"unknown modification {name!r} (known: {', '.join([*NAMES, 'Pyro_glu'])})")
        elif position == 0:
            n_term = f"[{NAMES[name]}]-"
        else:
            residues[position - 1] += f"[{NAMES[name]}]"
    return n_term + "".join(residues)


def _delimiter(header: str) -> str:
    for delimiter in ("\t", ",", " "):
        if delimiter in header:
            return delimiter
    raise PeprecError(f"the header {header.strip()!r} has no separator")


def read_peprec(path: str | PathLike) -> dict[str, Annotation]:
    """``{spec_id: Annotation}`` of a PEPREC file; PeprecError naming the file and line of a bad row,
    a duplicated ``spec_id`` or a missing column."""
    try:
        text = open(path, encoding="utf-8-sig").read()
    except (OSError, UnicodeDecodeError) as err:
        raise PeprecError(f"{path}: cannot read: {err}") from None
    lines = text.splitlines()
    if not lines:
        raise PeprecError(f"{path}: empty file, expected a header with {', '.join(COLUMNS)}")
    rows = csv.DictReader(lines, delimiter=_delimiter(lines[0]), skipinitialspace=True)
    missing = [c for c in COLUMNS if c not in (rows.fieldnames or ())]
    if missing:
        raise PeprecError(f"{path}, line 1: missing column(s) {', '.join(missing)}")
    table: dict[str, Annotation] = {}
    for number, row in enumerate(rows, start=2):
        spec_id = row["spec_id"]
        try:
            sequence = proforma(row["peptide"] or "", row["modifications"] or "")
            charge = int(row["charge"])
            if charge < 1:
                raise ValueError(f"charge must be >= 1, got {charge}")
        except (TypeError, ValueError) as err:
            raise PeprecError(f"{path}, line {number} (spec_id={spec_id}): {err}") from None
        if spec_id in table:
            raise PeprecError(f"{path}, line {number}: spec_id {spec_id!r} already on line {table[spec_id].line}")
        table[spec_id] = Annotation(sequence, charge, number)
    if not table:
        raise PeprecError(f"{path}: no rows after the header")
    return table
