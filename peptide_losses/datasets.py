"""The real annotated spectra that ship inside the package (``peptide_losses/data/``, Apache-2.0).

- ``casanovo-sample``: 128 preprocessed HCD spectra with ``SEQ=`` annotations, from
  Casanovo's sample data.
- ``massivekb-calibration`` and ``massivekb-test``: the two fixed halves of 500 MassIVE-KB
  HCD spectra of 500 distinct human peptides (ms2pip's test set), annotated by ms2pip's
  PEPREC table. The halves share no peptide (I = L, modifications ignored). Choose
  weights and thresholds on ``calibration``; report on ``test``.

The command line takes these names wherever it takes a spectra file
(``peptide-losses sequence massivekb-test -o psms.mztab``). ``data/README.md`` gives the
sources, checksums and how the split was drawn.
"""

from __future__ import annotations

import csv
import re
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .spectra import Preprocessing
from .spectra_files import Indexed, annotate, read_spectra
from .vocabulary import Vocabulary

DATA_DIR = Path(__file__).resolve().with_name("data")
CASANOVO_SAMPLE = DATA_DIR / "casanovo_sample_preprocessed_spectra.mgf"
MASSIVEKB_MGF = DATA_DIR / "massivekb_selected_500.mgf"
MASSIVEKB_PEPREC = DATA_DIR / "massivekb_selected_500.peprec"
MASSIVEKB_SPLIT = DATA_DIR / "massivekb_split.tsv"
SPLITS = ("calibration", "test")


class RealSet(NamedTuple):
    """A shipped set: its MGF, the PEPREC that annotates it (None: ``SEQ=`` in the MGF) and the
    split of the MGF it keeps (None: every spectrum)."""

    mgf: Path
    peprec: Path | None
    split: str | None


REAL_SETS = {
    "casanovo-sample": RealSet(CASANOVO_SAMPLE, None, None),
    **{f"massivekb-{split}": RealSet(MASSIVEKB_MGF, MASSIVEKB_PEPREC, split) for split in SPLITS},
}
#: The sets the trainer validates on and the README reports: never the calibration half.
REPORTED_SETS = ("casanovo-sample", "massivekb-test")


def massivekb_split() -> dict[str, str]:
    """``{spec_id: "calibration" | "test"}`` of the 500 MassIVE-KB spectra."""
    with open(MASSIVEKB_SPLIT, encoding="utf-8") as handle:
        rows = csv.DictReader((line for line in handle if not line.startswith("#")), delimiter="\t")
        return {row["spec_id"]: row["split"] for row in rows}


def real_set(name: str, vocabulary: Vocabulary, preprocessing: Preprocessing | None = None) -> list[Indexed]:
    """The annotated spectra of a shipped set, each with its reference in the set's MGF
    (``index=N``: its position in that file, so PSMs of a half point into the whole file)."""
    if name not in REAL_SETS:
        raise KeyError(f"unknown real set {name!r}; the shipped sets are {', '.join(REAL_SETS)}")
    mgf, peprec, split = REAL_SETS[name]
    spectra = read_spectra(mgf, vocabulary, preprocessing)
    if peprec is not None:
        spectra = annotate(spectra, peprec, vocabulary, mgf)
    if split is not None:
        halves = massivekb_split()
        spectra = [item for item in spectra if halves[item.spectrum.title] == split]
    return spectra


def peptide_key(sequence: str) -> str:
    """A peptide as no spectrum can tell it from its twins: residues only (modifications dropped), I as L."""
    return re.sub(r"[^A-Z]", "", re.sub(r"\[[^\]]*\]", "", sequence)).replace("I", "L")


@lru_cache(maxsize=1)
def evaluation_peptides() -> frozenset[str]:
    """:func:`peptide_key` of every peptide of every shipped real set: none may be a training peptide."""
    vocabulary = Vocabulary.default()
    return frozenset(peptide_key(item.spectrum.sequence) for name in REAL_SETS for item in real_set(name, vocabulary))
