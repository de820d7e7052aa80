"""The command line end to end on small real subsets (CPU), the mzTab it writes read back by pyteomics,
`evaluate`'s metrics against hand counts, `rescore` on an mzTab Casanovo 5.2.1 wrote, and bad input:
one line on stderr naming the file and the item, exit code 2.

The model runs with beams of 2-4 on a few spectra: these tests check what is written, not how
good it is (the recalls are in benchmarks/results/cpu/sequencing.md).
"""

import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pyteomics import mass, mztab

from peptide_losses import Vocabulary
from peptide_losses.cli import main
from peptide_losses.datasets import REAL_SETS, real_set
from peptide_losses.evaluation import best_psms, evaluate_psms, precision_coverage
from peptide_losses.judge import Judge, judge_path
from peptide_losses.mztab import PSM, PSMRow, MzTabError, psm_lines, read_psms, write_psms
from peptide_losses.scoring import shuffled_decoys
from peptide_losses.sequencing import DEFAULT_CHECKPOINT

from helpers.mzml import write_mzml

DATA = Path(__file__).resolve().parent / "data"
CASANOVO_MZTAB = DATA / "casanovo-5.2.1_top3.mztab"
CASANOVO_MGF = DATA / "casanovo_sample_first8.mgf"
PROTON = 1.007276467
PROFORMA = "opt_global_cv_MS:1003169_proforma_peptidoform_sequence"


@pytest.fixture(scope="module")
def vocabulary():
    return Vocabulary.default()


def spectra_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return [b + "END IONS\n" for b in text.split("END IONS\n") if "BEGIN IONS" in b]


def subset_mgf(tmp_path: Path, source: Path, count: int, name: str = "subset.mgf") -> Path:
    out = tmp_path / name
    out.write_text("".join(spectra_blocks(source)[:count]))
    return out


def psm_table(path: Path) -> list[dict]:
    return mztab.MzTab(str(path), table_format="dict").spectrum_match_table["rows"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_sequence_then_evaluate_on_real_spectra_and_the_mztab_reads_back(tmp_path, capsys, vocabulary):
    """6 real MassIVE-KB spectra through `sequence` (top 2 of a beam of 3) and `evaluate` (MGF + PEPREC):
    pyteomics reads every PSM back, ranks count from 1 with falling scores, and each calculated m/z is
    pyteomics' mass of the written residues and modifications at the spectrum's charge."""
    mgf = subset_mgf(tmp_path, REAL_SETS["massivekb-test"].mgf, 6)
    out = tmp_path / "psms.mztab"
    code, _, err = run_cli(capsys, "sequence", mgf, "-o", out, "--beam-size", "3", "--top-k", "2", "--no-progress",
                           "--batch-size", "4", "--backend", "reference")
    assert code == 0, err
    assert re.search(r"6 spectra in .* \d+ with a PSM, \d+ without", err)
    table = mztab.MzTab(str(out), table_format="dict")
    assert table.version == "1.0.0" and table.ms_runs[1]["location"] == mgf.resolve().as_uri()
    rows = table.spectrum_match_table["rows"]
    assert rows and {r["spectra_ref"] for r in rows} <= {f"ms_run[1]:index={i}" for i in range(6)}
    deltas = {"UNIMOD:4": 57.021464, "UNIMOD:35": 15.994915, "UNIMOD:7": 0.984016, "UNIMOD:1": 42.010565,
              "UNIMOD:5": 43.005814, "UNIMOD:385": -17.026549}
    by_ref = {}
    for row in rows:
        by_ref.setdefault(row["spectra_ref"], []).append(row)
        mods = [] if row["modifications"] is None else row["modifications"].split(",")
        delta = sum(deltas[m.split("-", 1)[1]] for m in mods)
        charge = row["charge"]
        assert row["calc_mass_to_charge"] == pytest.approx(
            (mass.fast_mass(row["sequence"]) + delta + charge * PROTON) / charge, abs=1e-5)
        assert vocabulary.encode(row["opt_global_cv_MS:1003169_proforma_peptidoform_sequence"])
    for group in by_ref.values():
        assert [r["opt_global_rank"] for r in group] == list(range(1, len(group) + 1)) and len(group) <= 2
        assert all(a["search_engine_score[1]"] >= b["search_engine_score[1]"] for a, b in zip(group, group[1:]))
    metrics = tmp_path / "m.json"
    code, printed, err = run_cli(capsys, "evaluate", out, mgf, "--peprec", REAL_SETS["massivekb-test"].peprec,
                                 "--json", metrics, "--plot", tmp_path / "curve.png")
    assert code == 0, err
    assert "peptide recall" in printed and (tmp_path / "curve.png").stat().st_size > 0
    assert '"spectra": 6' in metrics.read_text()


def test_evaluate_of_the_true_peptides_gives_recall_one(tmp_path, capsys, vocabulary):
    """The MassIVE-KB test half's own annotations, written as PSMs: every metric 1 (mass-based: a
    written I where the truth has L still matches)."""
    items = real_set("massivekb-test", vocabulary)
    psms = []
    for ref, s in items:
        tokens = [vocabulary.index("I") if vocabulary.tokens[t] == "L" else t for t in s.tokens]
        psms.append(PSM(vocabulary.decode(tokens), tokens, ref, 1, s.charge, s.precursor_mz, s.precursor_mz,
                        0.5, 0.0, 0.0, 0.0))
    path = tmp_path / "truth.mztab"
    assert write_psms(path, psms, vocabulary, spectra_file=REAL_SETS["massivekb-test"].mgf, software="test",
                      description="truth") == 250
    metrics = tmp_path / "m.json"
    code, printed, _ = run_cli(capsys, "evaluate", path, "massivekb-test", "--json", metrics)
    assert code == 0
    values = dict(line.rsplit(None, 1) for line in printed.splitlines())
    assert values["peptide recall"] == values["amino-acid precision"] == values["amino-acid recall"] == "1.000"
    assert values["precision-coverage AUC"] == "1.000" and values["annotated spectra"] == "250"


def test_precision_coverage_by_hand():
    """Scores 0.9 (right), 0.7 (right), 0.5 (wrong) of 4 spectra: precision 1, 1, 2/3 at coverage
    1/4, 1/2, 3/4; area 1/4 + 1/4 + (1 + 2/3) / 2 / 4 = 0.708333."""
    curve = precision_coverage([True, False, True], [0.9, 0.5, 0.7], total=4)
    assert curve["coverage"] == [0.25, 0.5, 0.75]
    assert curve["precision"] == pytest.approx([1.0, 1.0, 2 / 3])
    assert curve["auc"] == pytest.approx(0.25 + 0.25 + (1 + 2 / 3) / 8)


def test_best_psm_is_the_highest_score_and_nan_ranks_last():
    rows = [PSMRow("A", "index=0", math.nan, 1), PSMRow("B", "index=0", -3.0, 2), PSMRow("C", "index=0", -1.0, 3),
            PSMRow("D", "index=0", -1.0, 4), PSMRow("E", "index=1", math.nan, 5)]
    best = best_psms(rows)
    assert best["index=0"].sequence == "C" and best["index=1"].sequence == "E"


def test_evaluate_counts_residues_as_casanovo_does(vocabulary):
    """PEPTLDE vs truth PEPTIDE: all 7 match (I = L); PEPSK vs PEPTK: 4 of 5 (S and T differ, the
    suffix realigns after); a spectrum without PSM counts its residues as missed."""
    items = [("index=0", "PEPTIDE"), ("index=1", "PEPTK"), ("index=2", "AAAAK")]
    annotated = [_annotated(ref, seq, vocabulary) for ref, seq in items]
    psms = [PSMRow("PEPTLDE", "index=0", 1.0, 1), PSMRow("PEPSK", "index=1", 0.5, 2)]
    metrics = evaluate_psms(psms, annotated, vocabulary)
    assert metrics["peptide_recall"] == pytest.approx(1 / 3)
    assert metrics["aa_precision"] == pytest.approx(11 / 12)
    assert metrics["aa_recall"] == pytest.approx(11 / 17)
    assert metrics["psms"] == 2 and metrics["precision_at_full_coverage"] == 0.5


def _annotated(ref, sequence, vocabulary):
    from peptide_losses.spectra import Spectrum
    from peptide_losses.spectra_files import Indexed
    import numpy as np

    empty = np.zeros(0)
    return Indexed(ref, Spectrum(empty, empty, 500.0, 2, sequence, vocabulary.encode(sequence), ref))


def test_rescore_at_weight_zero_returns_casanovos_file_unchanged(tmp_path, capsys):
    """Casanovo 5.2.1's own mzTab (tests/data/README.md): every metadata line and every PSM cell it wrote
    come back as they were, in the same order; only the opt_ evidence columns are added."""
    out = tmp_path / "same.mztab"
    code, _, err = run_cli(capsys, "rescore", CASANOVO_MZTAB, CASANOVO_MGF, "-o", out, "--weight", "0",
                           "--backend", "reference")
    assert code == 0, err
    before, after = CASANOVO_MZTAB.read_text().splitlines(), out.read_text().splitlines()
    assert len(before) == len(after)
    for old, new in zip(before, after):
        cells, width = new.split("\t"), len(old.split("\t"))
        assert cells[:width] == old.split("\t")
        assert len(cells) == width + (3 if old.startswith(("PSH", "PSM")) else 0)


def planted_psms(path: Path, vocabulary, items, truth_first) -> Path:
    """An mzTab of ``items``' spectra (casanovo-sample), two PSMs each at equal tool scores: the true
    peptide and a shuffled same-mass decoy, the truth first where ``truth_first(b)``."""
    truth = torch.zeros(len(items), 40, dtype=torch.long)
    for b, (_, s) in enumerate(items):
        truth[b, :len(s.tokens)] = torch.tensor(s.tokens)
    decoys = shuffled_decoys(truth, vocabulary.mass_tensor(), 1, torch.Generator().manual_seed(0))[:, 0]
    psms = []
    for b, (ref, s) in enumerate(items):
        pair = (truth[b], decoys[b]) if truth_first(b) else (decoys[b], truth[b])
        for rank, row in enumerate(pair, start=1):
            tokens = [t for t in row.tolist() if t]
            psms.append(PSM(vocabulary.decode(tokens), tokens, ref, rank, s.charge, s.precursor_mz, s.precursor_mz,
                            0.0, 0.0, 0.0, 0.0))
    write_psms(path, psms, vocabulary, spectra_file=REAL_SETS["casanovo-sample"].mgf, software="test",
               description="a true peptide and its decoy per spectrum")
    return path


def first_psms(path: Path) -> dict[str, dict]:
    """Each spectrum's first PSM row of an mzTab, by spectra_ref."""
    first = {}
    for row in psm_table(path):
        first.setdefault(row["spectra_ref"].removeprefix("ms_run[1]:"), row)
    return first


def test_rescore_puts_the_true_peptide_above_its_same_mass_decoy(tmp_path, capsys, vocabulary):
    """For each of the 128 real Casanovo-sample spectra, a tool ranks a shuffled same-mass decoy first
    and the true peptide second, at equal scores. The spectrum evidence must reorder nearly all: the
    true peptide scores below its permutations in 99 % of these spectra (scoring.SCORE_DEFAULTS)."""
    items = real_set("casanovo-sample", vocabulary)
    planted = planted_psms(tmp_path / "planted.mztab", vocabulary, items, lambda b: False)
    out = tmp_path / "rescored.mztab"
    code, _, err = run_cli(capsys, "rescore", planted, "casanovo-sample", "-o", out, "--backend", "reference")
    assert code == 0, err
    first = first_psms(out)
    truths = {ref: s.sequence for ref, s in items}
    right = sum(vocabulary.encode(first[ref][PROFORMA]) == vocabulary.encode(truths[ref]) for ref in truths)
    assert right >= 0.9 * len(items)
    for row in psm_table(out):  # the new score is the tool's minus the weighted evidence, as documented
        penalty = 0.01 * (abs(row["opt_global_precursor_ppm"]) > 20)
        assert row["search_engine_score[1]"] == pytest.approx(
            row["opt_global_original_score"] - 100 * (row["opt_global_spectrum_score"] + penalty), rel=1e-6)


def test_a_judge_of_a_tools_psms_fitted_on_some_spectra_reorders_the_others(tmp_path, capsys, vocabulary):
    """fit-judge --psms on 64 Casanovo-sample spectra (truth and decoy at equal tool scores, in random
    order: only the evidence tells them apart; with the package's intensity model's feature), then
    rescore --judge on the other 64: the truth comes first in nearly all of them, and the written
    score is the judge's P(correct)."""
    items = real_set("casanovo-sample", vocabulary)
    order = torch.rand(len(items), generator=torch.Generator().manual_seed(1)) < 0.5
    fit_items, held_out = items[:64], items[64:]
    fit = planted_psms(tmp_path / "fit.mztab", vocabulary, fit_items, lambda b: bool(order[b]))
    judge = tmp_path / "tool.judge.json"
    code, _, err = run_cli(capsys, "fit-judge", "casanovo-sample", "--psms", fit, "-o", judge, "--backend", "reference",
                           "--intensities", "model", "--no-progress")
    assert code == 0, err
    fitted = Judge.load(judge, "psm")
    assert "64 spectra, 128 candidates, 64 correct" in fitted.fitted_on and fitted.intensity_source == "model"
    test = planted_psms(tmp_path / "test.mztab", vocabulary, held_out, lambda b: bool(order[64 + b]))
    out = tmp_path / "judged.mztab"
    code, _, err = run_cli(capsys, "rescore", test, "casanovo-sample", "-o", out, "--judge", judge,
                           "--backend", "reference")
    assert code == 0, err
    first = first_psms(out)
    right = sum(vocabulary.encode(first[ref][PROFORMA]) == vocabulary.encode(s.sequence) for ref, s in held_out)
    assert right >= 0.9 * len(held_out)
    scores = [row["search_engine_score[1]"] for row in psm_table(out)]
    assert all(0 <= p <= 1 for p in scores) and len(scores) == 2 * len(held_out)


def test_rescore_takes_a_judge_or_a_weight_not_both(tmp_path, capsys):
    code, _, err = run_cli(capsys, "rescore", CASANOVO_MZTAB, CASANOVO_MGF, "-o", tmp_path / "o.mztab",
                           "--judge", _beam_judge(), "--weight", "5")
    assert code == 2 and err.count("\n") == 1 and "drop one" in err


def test_python_dash_m_is_the_console_script(tmp_path):
    result = subprocess.run([sys.executable, "-m", "peptide_losses", "evaluate", tmp_path / "none.mztab",
                             "massivekb-test"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "none.mztab" in result.stderr
    script = shutil.which("peptide-losses", path=str(Path(sys.executable).parent))
    if script is not None:  # installed as a console script (pip install -e .)
        again = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "sequence" in again.stdout


def test_spectra_that_cannot_be_sequenced_are_counted_not_dropped(tmp_path, capsys):
    """A spectrum whose peaks all fall below the preprocessing's 50 m/z has nothing to score: no PSM,
    and the summary says so; the other spectrum still gets its PSM."""
    good = spectra_blocks(CASANOVO_MGF)[0]
    empty = "BEGIN IONS\nTITLE=empty\nPEPMASS=500.3\nCHARGE=2+\n10.0 1.0\n20.0 2.0\nEND IONS\n"
    mgf = tmp_path / "two.mgf"
    mgf.write_text(good + empty)
    out = tmp_path / "psms.mztab"
    code, _, err = run_cli(capsys, "sequence", mgf, "-o", out, "--beam-size", "2", "--no-progress",
                           "--backend", "reference")
    assert code == 0, err
    assert "1 with a PSM, 1 without" in err
    assert {r["spectra_ref"] for r in psm_table(out)} == {"ms_run[1]:index=0"}


def test_a_spectrum_without_peak_lines_gets_no_psm_alone_or_beside_others(tmp_path, capsys):
    """An MGF spectrum with no peak line at all (the reader accepts it) is counted as without a PSM, in a
    batch of its own (no spectrum has a peak: the padded batch is 0 peaks wide) and beside another."""
    empty = "BEGIN IONS\nTITLE=no peaks\nPEPMASS=500.3\nCHARGE=2+\nEND IONS\n"
    for name, body, expected in (("alone", empty, set()),
                                 ("beside", spectra_blocks(CASANOVO_MGF)[0] + empty, {"ms_run[1]:index=0"})):
        mgf, out = tmp_path / f"{name}.mgf", tmp_path / f"{name}.mztab"
        mgf.write_text(body)
        code, _, err = run_cli(capsys, "sequence", mgf, "-o", out, "--beam-size", "2", "--no-progress",
                               "--backend", "reference")
        assert code == 0, err
        assert f"{len(expected)} with a PSM, 1 without" in err
        assert {r["spectra_ref"] for r in psm_table(out)} == expected


def test_a_precursor_heavier_than_the_model_can_write_gets_no_psm(tmp_path, capsys):
    """30 tokens weigh at most 30 tryptophans (pyteomics: 186.0793 Da each, 5,582.4 Da); 5 Da of slack for
    isotope errors. A precursor at 5,585 Da is decoded; at 5,590 Da, or 36 kDa at 60+, it is not: no
    candidate could be its peptide. The spectrum beside it keeps its PSM."""
    from pyteomics import mass as pyteomics_mass

    from peptide_losses.constants import PROTON

    heaviest = 30 * pyteomics_mass.std_aa_mass["W"]
    good = spectra_blocks(CASANOVO_MGF)[0]
    peaks = "".join(line + "\n" for line in good.splitlines() if line[:1].isdigit())

    def block(title, neutral, charge=5):
        return f"BEGIN IONS\nTITLE={title}\nPEPMASS={neutral / charge + PROTON!r}\nCHARGE={charge}+\n{peaks}END IONS\n"

    mgf, out = tmp_path / "heavy.mgf", tmp_path / "heavy.mztab"
    mgf.write_text(good + block("within", heaviest + 3.0) + block("beyond", heaviest + 8.0)
                   + block("charge 60", 36_000.0, charge=60))
    code, _, err = run_cli(capsys, "sequence", mgf, "-o", out, "--beam-size", "2", "--no-progress",
                           "--backend", "reference")
    assert code == 0, err
    assert "2 with a PSM, 2 without" in err
    assert {r["spectra_ref"] for r in psm_table(out)} == {"ms_run[1]:index=0", "ms_run[1]:index=1"}


def test_sequence_reads_mzml(tmp_path, capsys):
    blocks = [b for b in spectra_blocks(CASANOVO_MGF)[:2]]
    spectra = []
    for n, block in enumerate(blocks):
        peaks = [line.split() for line in block.splitlines() if line[:1].isdigit()]
        spectra.append(dict(id=f"scan={n + 10}", level=2, mz=[float(p[0]) for p in peaks],
                            intensity=[float(p[1]) for p in peaks],
                            precursor_mz=float(re.search(r"PEPMASS=(\S+)", block).group(1)), charge=2))
    path = write_mzml(tmp_path / "two.mzML", spectra)
    out = tmp_path / "psms.mztab"
    code, _, err = run_cli(capsys, "sequence", path, "-o", out, "--beam-size", "2", "--no-progress",
                           "--backend", "reference")
    assert code == 0, err
    assert {r["spectra_ref"] for r in psm_table(out)} == {"ms_run[1]:scan=10", "ms_run[1]:scan=11"}


def _beam_judge():
    return judge_path(DEFAULT_CHECKPOINT)


def _bad_mgf(tmp_path, body):
    path = tmp_path / "bad.mgf"
    path.write_text(body)
    return path


def _foreign_checkpoint(tmp_path):
    """The shipped checkpoint with a vocabulary of 5 fewer tokens recorded: its weights cannot fit."""
    from peptide_losses.train.checkpoint import vocabulary_record

    state = torch.load(DEFAULT_CHECKPOINT, map_location="cpu", weights_only=False)
    state["vocabulary"] = vocabulary_record(Vocabulary.from_tokens(list(Vocabulary.default().tokens[1:-5])))
    path = tmp_path / "foreign.pt"
    torch.save(state, path)
    return path


BAD_INPUTS = {
    "missing spectra file": (lambda t: ["sequence", t / "nope.mgf", "-o", t / "o.mztab"], "nope.mgf: no such file"),
    "empty spectra file": (lambda t: ["sequence", _bad_mgf(t, ""), "-o", t / "o.mztab"], "bad.mgf: empty file"),
    "no charge": (lambda t: ["sequence", _bad_mgf(t, "BEGIN IONS\nTITLE=x\nPEPMASS=500.2\n100 1\nEND IONS\n"),
                             "-o", t / "o.mztab"], "bad.mgf: spectrum 0 (TITLE=x), CHARGE"),
    "NaN intensity": (lambda t: ["sequence", _bad_mgf(t, "BEGIN IONS\nTITLE=y\nPEPMASS=500.2\nCHARGE=2+\n100 nan\n"
                                                        "END IONS\n"), "-o", t / "o.mztab"],
                      "bad.mgf: spectrum 0 (TITLE=y)"),
    "negative intensity": (lambda t: ["sequence", _bad_mgf(t, "BEGIN IONS\nTITLE=z\nPEPMASS=500.2\nCHARGE=2+\n"
                                                             "100 -1\nEND IONS\n"), "-o", t / "o.mztab"],
                           "bad.mgf: spectrum 0 (TITLE=z), line 5, peak"),
    "unknown spectra format": (lambda t: ["sequence", _bad_mgf(t, "x").rename(t / "x.csv"), "-o", t / "o.mztab"],
                               "x.csv: unknown spectra format"),
    "not a checkpoint": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--checkpoint",
                                    _bad_mgf(t, "not torch")], "bad.mgf: not a checkpoint"),
    "checkpoint of another vocabulary": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--checkpoint",
                                                    _foreign_checkpoint(t)], "foreign.pt: its weights do not fit"),
    "bad top-k": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--top-k", "0"], "--top-k must be >= 1"),
    "unknown device": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--device", "gpu0"],
                       "--device 'gpu0'"),
    "unknown modification": (lambda t: ["evaluate", CASANOVO_MZTAB, CASANOVO_MGF, "--peprec",
                                        _peprec(t, "1|Phospho")], "unknown modification 'Phospho'"),
    "spectra_ref of no spectrum (rescore)": (lambda t: ["rescore", _psms_of(t, "index=99"), CASANOVO_MGF, "-o",
                                                        t / "o.mztab"], "psms.mztab, line 18: spectra_ref ms_run[1]:index=99"),
    "spectra_ref of no spectrum (evaluate)": (lambda t: ["evaluate", _psms_of(t, "index=99"), CASANOVO_MGF],
                                              "psms.mztab, line 18: spectra_ref ms_run[1]:index=99"),
    "not an mzTab": (lambda t: ["evaluate", CASANOVO_MGF, CASANOVO_MGF], "no PSM section"),
    "unknown token in a PSM": (lambda t: ["rescore", _psms_of(t, "index=0", "PEPXK"), CASANOVO_MGF, "-o",
                                          t / "o.mztab"], "psms.mztab, line 18: sequence 'PEPXK'"),
    "unannotated spectrum (fit-judge --psms)": (
        lambda t: ["fit-judge", _bad_mgf(t, "BEGIN IONS\nTITLE=u\nPEPMASS=500.2\nCHARGE=2+\n100 1\n200 1\nEND IONS\n"),
                   "--psms", _psms_of(t, "index=0"), "-o", t / "j.json"], "bad.mgf: spectrum index=0 has no annotation"),
    "unannotated spectrum (fit-judge)": (
        lambda t: ["fit-judge", _bad_mgf(t, "BEGIN IONS\nTITLE=u\nPEPMASS=500.2\nCHARGE=2+\n100 1\n200 1\nEND IONS\n"),
                   "-o", t / "j.json"], "bad.mgf: spectrum index=0 has no annotation"),
    "a judge with a NaN weight": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--judge",
                                             _judge_with(t, weight=0, value=math.nan)],
                                  "bad.judge.json: not a judge file: weight[0] (mean_log_prob) is nan"),
    "a judge with a zero scale": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "o.mztab", "--judge",
                                             _judge_with(t, scale=3, value=0.0)],
                                  "bad.judge.json: not a judge file: scale[3]"),
    "no right candidate to learn from (fit-judge --psms)": (
        lambda t: ["fit-judge", CASANOVO_MGF, "--psms", _psms_of(t, "index=0"), "-o", t / "j.json", "--no-progress"],
        "casanovo_sample_first8.mgf: 0 of 1 candidates match"),
    "an infinite --l2": (lambda t: ["fit-judge", CASANOVO_MGF, "-o", t / "j.json", "--l2", "inf"],
                         "--l2 must be a finite number >= 0, got inf"),
    "no folder for -o": (lambda t: ["sequence", CASANOVO_MGF, "-o", t / "none" / "o.mztab"],
                         "o.mztab: no folder"),
    "no folder for --json": (lambda t: ["evaluate", CASANOVO_MZTAB, CASANOVO_MGF, "--json", t / "none" / "e.json"],
                             "e.json: no folder"),
    "a beam judge for rescore": (lambda t: ["rescore", CASANOVO_MZTAB, CASANOVO_MGF, "-o", t / "o.mztab", "--judge",
                                            _beam_judge()], "gpu_preset.judge.json: a beam judge"),
    "unknown set name": (lambda t: ["evaluate", CASANOVO_MZTAB, "massivekb-tset"],
                         "massivekb-tset: no such file, and not a shipped set"),
}


def _judge_with(tmp_path, value, **position):
    """The shipped judge's file with one number replaced: ``field=index`` gets ``value``."""
    (field, index), = position.items()
    record = json.loads(_beam_judge().read_text())
    record[field][index] = value
    path = tmp_path / "bad.judge.json"
    path.write_text(json.dumps(record))
    return path


def _peprec(tmp_path, mods):
    titles = [re.search(r"TITLE=(.*)", b).group(1) for b in spectra_blocks(CASANOVO_MGF)]
    path = tmp_path / "bad.peprec"
    path.write_text("spec_id modifications peptide charge\n" + "".join(f"{t} {mods} PEPK 2\n" for t in titles))
    return path


def _psms_of(tmp_path, ref, sequence="PEPK"):
    """One PSM on line 18 of its file: 15 metadata lines (8 + the default vocabulary's 7 modifications),
    a blank line, the PSH header."""
    vocabulary = Vocabulary.default()
    path = tmp_path / "psms.mztab"
    write_psms(path, [PSM("PEPK", vocabulary.encode("PEPK"), ref, 1, 2, 500.0, 500.0, 1.0, 0.0, 0.0, 0.0)],
               vocabulary, spectra_file=CASANOVO_MGF, software="test", description="bad")
    path.write_text(path.read_text().replace("\tPEPK\t", f"\t{sequence}\t"))
    return path


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_one_line_naming_file_and_item_with_exit_code_2(tmp_path, capsys, case):
    argv, expected = BAD_INPUTS[case]
    code, out, err = run_cli(capsys, *argv(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("peptide-losses ")
    assert expected in err


def test_psm_lines_refuses_rows_of_another_width(tmp_path):
    path = tmp_path / "x.mztab"
    path.write_text("MTD\tmzTab-version\t1.0.0\nPSH\tsequence\tspectra_ref\tsearch_engine_score[1]\n"
                    "PSM\tPEPK\tms_run[1]:index=0\n")
    with pytest.raises(MzTabError, match="line 3: 2 cells, the PSH header has 3"):
        psm_lines(path)
    path.write_text("MTD\tmzTab-version\t1.0.0\nPSH\tsequence\tspectra_ref\tsearch_engine_score[1]\n"
                    "PSM\tPEPK\tindex=0\t1.0\n")
    with pytest.raises(MzTabError, match="line 3: spectra_ref 'index=0' is not ms_run"):
        read_psms(path)


def test_a_score_that_is_not_a_number_or_null_is_refused_not_ranked_last(tmp_path):
    """mzTab's score cells hold a number or null (missing): null reads as NaN (ranked last by rescore, as the
    help says); any other text is an error naming the line, not a silent NaN."""
    head = "MTD\tmzTab-version\t1.0.0\nPSH\tsequence\tspectra_ref\tsearch_engine_score[1]\n"
    path = tmp_path / "x.mztab"
    path.write_text(head + "PSM\tPEPK\tms_run[1]:index=0\tnull\nPSM\tPEPR\tms_run[1]:index=0\t0.25\n")
    assert [math.isnan(r.score) for r in read_psms(path)] == [True, False] and read_psms(path)[1].score == 0.25
    path.write_text(head + "PSM\tPEPK\tms_run[1]:index=0\t0.5\nPSM\tPEPR\tms_run[1]:index=0\thigh\n")
    with pytest.raises(MzTabError, match=r"line 4: search_engine_score\[1\] 'high' is not a number or null"):
        read_psms(path)


def test_a_judge_fitted_on_ms2pip_runs_on_the_intensity_model_where_ms2pip_is_missing_and_says_so_once(
        tmp_path, capsys, monkeypatch):
    """Where ms2pip is missing, a judge fitted on its feature reads the package's intensity model's instead:
    the PSMs are those of the same weights saved as a judge of the model's feature, and one warning line
    (over 4 spectra in two batches) says so; fit-judge --intensities ms2pip still refuses (it needs ms2pip's
    own predictions to fit on)."""
    from peptide_losses import predicted_intensity
    from peptide_losses.judge import FEATURE_SETS

    shipped = Judge.load(judge_path(DEFAULT_CHECKPOINT))
    paths = {}
    for source in ("ms2pip", "model"):
        paths[source] = tmp_path / f"{source}.judge.json"
        Judge(FEATURE_SETS[source], (*shipped.mean, 0.5), (*shipped.scale, 0.2), (*shipped.weight, 2.0), shipped.bias,
              "test").save(paths[source])
    monkeypatch.setattr(predicted_intensity, "available", lambda: False)
    predicted_intensity._stand_in_for_ms2pip.cache_clear()
    tables, warnings_said, spectra = {}, {}, subset_mgf(tmp_path, CASANOVO_MGF, 4)
    for source, path in paths.items():
        code, _, err = run_cli(capsys, "sequence", spectra, "-o", tmp_path / f"{source}.mztab", "--judge", path,
                               "--batch-size", 2, "--beam-size", 5, "--no-progress")
        assert code == 0, err
        tables[source] = [(r["sequence"], r["search_engine_score[1]"]) for r in psm_table(tmp_path / f"{source}.mztab")]
        warnings_said[source] = [line for line in err.splitlines() if "warning" in line]
    assert tables["ms2pip"] == tables["model"] and len(tables["model"]) == 4
    assert len(warnings_said["ms2pip"]) == 1 and "ms2pip is not installed" in warnings_said["ms2pip"][0]
    assert warnings_said["model"] == []
    predicted_intensity._stand_in_for_ms2pip.cache_clear()
    code, _, err = run_cli(capsys, "fit-judge", spectra, "-o", tmp_path / "j.json", "--intensities", "ms2pip")
    assert code == 2 and "ms2pip is not installed" in err


def test_default_batch_size_is_64_spectra_on_the_cpu_and_20480_candidates_at_most_1024_spectra_on_a_gpu():
    """Hand-computed: 20,480 candidates are 1,024 spectra at K=20, 512 at K=40, 4,096 at K=5 (capped at 1,024
    spectra: the encoder's activations grow with spectra) and 1 at K=30,000; a CPU batch is 64 at any K."""
    from peptide_losses.cli.sequence import default_batch_size

    gpu = torch.device("cuda", 1)
    assert [default_batch_size(gpu, k) for k in (1, 5, 20, 40, 30_000)] == [1024, 1024, 1024, 512, 1]
    assert {default_batch_size(torch.device("cpu"), k) for k in (1, 20, 40)} == {64}
