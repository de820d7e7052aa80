"""The real sets that ship inside the package: the PEPREC join, the MassIVE-KB split, the readers.

Each annotation is checked against the file it came from, read independently (pyteomics for the
MGF, csv for the PEPREC, pyteomics' masses and Unimod's deltas typed in here), so a wrong join or
a misread modification shows as a precursor that does not fit.
"""

import csv
import hashlib
import re

import pytest
from pyteomics import mass, mgf

from peptide_losses import Vocabulary
from peptide_losses.datasets import MASSIVEKB_MGF, MASSIVEKB_PEPREC, REAL_SETS, massivekb_split, real_set
from peptide_losses.peprec import PeprecError, proforma, read_peprec
from peptide_losses.spectra_files import SpectraFileError, annotate, read_spectra

from helpers.mzml import write_mzml

#: Unimod monoisotopic deltas (unimod.org): ms2pip's names; Pyro_glu as from Q (every one in the set is on Q).
UNIMOD = {"Carbamidomethyl": 57.021464, "Oxidation": 15.994915, "Deamidation": 0.984016, "Acetyl": 42.010565,
          "Carbamyl": 43.005814, "Pyro_glu": -17.026549}
PROTON = 1.007276467


def peprec_rows():
    with open(MASSIVEKB_PEPREC) as handle:
        return list(csv.DictReader(handle, delimiter=" "))


def independent_mz(row) -> float:
    mods = row["modifications"].split("|") if row["modifications"] != "-" else []
    delta = sum(UNIMOD[name] for name in mods[1::2])
    charge = int(row["charge"])
    return (mass.fast_mass(row["peptide"]) + delta + charge * PROTON) / charge


@pytest.fixture(scope="module")
def vocabulary():
    return Vocabulary.default()


def test_every_massivekb_annotation_fits_its_spectrums_precursor(vocabulary):
    """The PEPREC's peptide, as pyteomics weighs it, fits the MGF's PEPMASS (isotope error 0 or 1) for
    nearly every spectrum, and the package's join gives each spectrum exactly that mass."""
    pepmass = {s["params"]["title"]: s["params"]["pepmass"][0] for s in mgf.read(str(MASSIVEKB_MGF))}
    expected = {row["spec_id"]: independent_mz(row) for row in peprec_rows()}
    fits = [min(abs(pepmass[t] - (mz + i * 1.0033548 / int(r["charge"]))) / mz * 1e6 for i in (0, 1)) < 20
            for (t, mz), r in zip(expected.items(), peprec_rows())]
    assert len(fits) == 500 and sum(fits) >= 490
    joined = real_set("massivekb-test", vocabulary) + real_set("massivekb-calibration", vocabulary)
    assert len(joined) == 500
    for ref, spectrum in joined:
        assert vocabulary.precursor_mz(spectrum.tokens, spectrum.charge) == pytest.approx(expected[spectrum.title],
                                                                                          abs=2e-4)
        # The reference points at the spectrum's position in the whole file.
        assert list(pepmass)[int(ref.removeprefix("index="))] == spectrum.title


def test_split_halves_are_disjoint_by_peptide_and_follow_the_documented_rule():
    """data/README.md: stripped peptides (I as L) sorted by sha256, the first 250 spectra calibration."""
    keys = {row["spec_id"]: row["peptide"].replace("I", "L") for row in peprec_rows()}
    ordered = sorted(keys, key=lambda t: hashlib.sha256(keys[t].encode()).hexdigest())
    expected = {t: "calibration" if i < 250 else "test" for i, t in enumerate(ordered)}
    assert massivekb_split() == expected
    halves = {name: {keys[t] for t, s in expected.items() if s == name} for name in ("calibration", "test")}
    assert not halves["calibration"] & halves["test"]


def test_casanovo_sample_is_read_whole_and_shares_no_peptide_with_massivekb(vocabulary):
    sample = real_set("casanovo-sample", vocabulary)
    assert len(sample) == 128 and all(s.tokens for _, s in sample)
    assert [ref for ref, _ in sample] == [f"index={i}" for i in range(128)]
    stripped = {re.sub(r"[^A-Z]", "", re.sub(r"\[[^\]]*\]", "", s.sequence)).replace("I", "L") for _, s in sample}
    assert not stripped & {row["peptide"].replace("I", "L") for row in peprec_rows()}


@pytest.mark.parametrize("peptide, mods, expected", [
    ("PEPCK", "-", "PEPCK"),
    ("PEPCK", "4|Carbamidomethyl", "PEPC[Carbamidomethyl]K"),
    ("AMNK", "0|Acetyl|2|Oxidation|3|Deamidation", "[Acetyl]-AM[Oxidation]N[Deamidated]K"),
    ("QPEK", "1|Pyro_glu", "[-17.026549]-QPEK"),
    ("EPEK", "1|Pyro_glu", "[-18.010565]-EPEK"),
])
def test_proforma_writes_peprec_modifications(peptide, mods, expected):
    assert proforma(peptide, mods) == expected


@pytest.mark.parametrize("peptide, mods, message", [
    ("PEPK", "2|Phospho", "unknown modification 'Phospho'"),
    ("PEPK", "5|Oxidation", "outside 0..4"),
    ("PEPK", "-1|Amidated", "outside 0..4"),
    ("PEPK", "1|Pyro_glu", "N-terminal Q or E"),
    ("PEPK", "1|Oxidation|2", "position|name pairs"),
    ("pepk", "-", "upper-case"),
])
def test_proforma_names_what_it_cannot_write(peptide, mods, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        proforma(peptide, mods)


@pytest.mark.parametrize("body, message", [
    ("spec_id peptide charge\na PEPK 2\n", "line 1: missing column(s) modifications"),
    ("spec_id modifications peptide charge\na - PEPK 2\na - PEPR 2\n", "line 3: spec_id 'a' already on line 2"),
    ("spec_id modifications peptide charge\na - PEPK two\n", "line 2 (spec_id=a)"),
    ("spec_id modifications peptide charge\na 1|Nope PEPK 2\n", "line 2 (spec_id=a): unknown modification"),
    ("", "empty file"),
])
def test_read_peprec_names_the_line(tmp_path, body, message):
    path = tmp_path / "bad.peprec"
    path.write_text(body)
    with pytest.raises(PeprecError, match=re.escape(message)) as error:
        read_peprec(path)
    assert str(path) in str(error.value)


def test_annotate_refuses_a_spectrum_the_table_does_not_hold_or_of_another_charge(tmp_path, vocabulary):
    spectra = read_spectra(MASSIVEKB_MGF, vocabulary)[:2]
    table = tmp_path / "one.peprec"
    title = spectra[0].spectrum.title
    table.write_text(f"spec_id modifications peptide charge\n{title} - PEPK {spectra[0].spectrum.charge}\n")
    with pytest.raises(SpectraFileError, match=f"spectrum 1 .*TITLE not found in {re.escape(str(table))}"):
        annotate(spectra, table, vocabulary)
    table.write_text(f"spec_id modifications peptide charge\n{title} - PEPK {spectra[0].spectrum.charge + 1}\n")
    with pytest.raises(SpectraFileError, match="charge"):
        annotate(spectra[:1], table, vocabulary)


def test_mzml_spectra_keep_their_native_ids_and_skip_ms1(tmp_path, vocabulary):
    path = write_mzml(tmp_path / "run.mzML", [
        dict(id="scan=1", level=1, mz=[100.0, 200.0], intensity=[1.0, 2.0]),
        dict(id="scan=2", level=2, mz=[300.0, 150.0], intensity=[1.0, 2.0], precursor_mz=500.25, charge=2),
        dict(id="scan=3", level=2, mz=[120.0], intensity=[4.0], precursor_mz=400.5, charge=3),
    ])
    read = read_spectra(path, vocabulary)
    assert [ref for ref, _ in read] == ["scan=2", "scan=3"]
    first = read[0].spectrum
    assert first.mz.tolist() == [150.0, 300.0] and first.intensity.tolist() == [2.0, 1.0]
    assert (first.precursor_mz, first.charge) == (500.25, 2)


@pytest.mark.parametrize("spectrum, message", [
    (dict(precursor_mz=500.0, charge=None), "charge missing"),
    (dict(precursor_mz=None, charge=2), "precursor m/z missing"),
    (dict(precursor_mz=1.0, charge=2), "does not exceed a proton's"),  # neutral mass (1 - 1.00728) x 2 < 0
    (dict(precursor_mz=500.0, charge=2, intensity=[float("nan")]), "finite"),
])
def test_mzml_spectrum_errors_name_file_and_spectrum(tmp_path, vocabulary, spectrum, message):
    path = write_mzml(tmp_path / "bad.mzML", [{"id": "scan=7", "level": 2, "mz": [150.0], "intensity": [1.0],
                                                **spectrum}])
    with pytest.raises(SpectraFileError, match=message) as error:
        read_spectra(path, vocabulary)
    assert str(path) in str(error.value) and "scan=7" in str(error.value)


def test_every_shipped_set_is_named_for_the_command_line():
    assert set(REAL_SETS) == {"casanovo-sample", "massivekb-calibration", "massivekb-test"}
    assert all(s.mgf.is_file() and (s.peprec is None or s.peprec.is_file()) for s in REAL_SETS.values())
