"""Casanovo (5.2.1) with the losses: its tokenizer's vocabulary, the acceptance check on the real spectra, training,
reranking its beam, and the mzTab that ``casanovo sequence`` itself writes (tests/data/).

Runs where casanovo is installed (``pip install -e ".[casanovo]"``); CI installs
it and fails these tests without it (tests/conftest.py).
"""

import csv
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from peptide_losses import PrecursorMassLoss, SpectrumMatchingLoss, Vocabulary, precursor_ppm, spectrum_scores
from peptide_losses.decoding import candidate_ppm, rerank
from peptide_losses.integrations.candidates import candidate_scores, candidate_tokens
from peptide_losses.recommended import RECOMMENDED, Recommendation
from peptide_losses.spectra import collate, read_mgf

from helpers.casanovo_run import casanovo_mztab
from helpers.model_targets import check_true_peptides, one_hot

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "casanovo_train.py"
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def tokenizer(casanovo):
    """The tokenizer ``casanovo train`` builds from Casanovo's default config."""
    from casanovo.config import Config
    from casanovo.denovo.model_runner import ModelRunner

    runner = ModelRunner(Config())
    runner.initialize_tokenizer()
    return runner.tokenizer


@pytest.fixture(scope="module")
def real(real_mgf, tokenizer):
    """The 128 real spectra and their peptides as Casanovo's targets: C->N, stop token, padding."""
    spectra = read_mgf(real_mgf, Vocabulary.default())
    targets = tokenizer.tokenize([s.sequence for s in spectra], add_stop=True)
    return collate(spectra, Vocabulary.default()), targets


def model_batch(data, targets, part):
    """A batch as depthcharge hands it to Spec2Pep (float32 precursor m/z)."""
    return dict(mz_array=data.mz[part], intensity_array=data.intensity[part],
                precursor_mz=data.precursor_mz[part].float(), precursor_charge=data.charge[part], seq=targets[part])


def test_from_casanovo_is_the_logit_order_with_the_tokenizers_masses(tokenizer):
    from casanovo.denovo.model import Spec2Pep

    vocab = Vocabulary.from_casanovo(tokenizer)
    vocab.check_tokens(tokenizer.reverse_index)
    assert vocab.special == ("$",) and vocab.tokens[tokenizer.stop_int] == "$"
    assert len(vocab) == Spec2Pep(dim_model=8, n_head=1, dim_feedforward=8, n_layers=1, tokenizer=tokenizer).vocab_size
    default = Vocabulary.default()
    for token, mass in zip(vocab.tokens[1:], vocab.masses[1:]):
        assert mass == (0.0 if token == "$" else tokenizer.residues[token])
        if token != "$":  # Casanovo's config rounds to 1e-6 Da
            assert mass == pytest.approx(default.masses[default.index(token)], abs=1e-5)
    assert [t for t in vocab.tokens if vocab.is_n_terminal(t)] == [t for t in tokenizer.index if t.endswith("]-")]


def test_default_vocabulary_against_casanovo_tokens_is_an_error(real, tokenizer):
    default = Vocabulary.default()
    assert len(default) == len(tokenizer) + 1  # the size check alone cannot see it
    for module in (SpectrumMatchingLoss, PrecursorMassLoss):
        with pytest.raises(ValueError, match=r"token index 1: vocabulary has 'G', model has '\$'"):
            module(default, tokens=tokenizer.reverse_index)
    # What it computes unchecked: finite and far off.
    batch, targets = real
    ppm = precursor_ppm(one_hot(targets, len(default)), batch.precursor_mz, batch.charge, masses=default,
                        mask=targets != 0, isotope_errors=(0, 1))
    assert torch.isfinite(ppm).all() and ppm.median() > 10_000


def test_acceptance_one_hot_true_peptides_through_the_adapter(real, tokenizer):
    batch, targets = real
    vocab = Vocabulary.from_casanovo(tokenizer)
    losses, true = check_true_peptides(vocab, tokenizer.reverse_index, targets, batch)
    # The fused kernels (on the GPU, or interpreted on the CPU) agree on a slice.
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    losses.spectrum.options["backend"] = losses.precursor.options["backend"] = "triton"
    part = slice(0, 12)
    inputs = (targets, batch.mz, batch.intensity, batch.precursor_mz, batch.charge, batch.peak_mask)
    targets, *peaks = (t[part].to(device) for t in inputs)
    got = losses.to(device)(one_hot(targets, len(vocab)), targets, *peaks)
    torch.testing.assert_close(got[0].cpu(), true[0][part], rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(got[1].cpu(), true[1][part], rtol=1e-6, atol=1e-9)


def test_training_step_adds_the_ramped_mass_losses(real, tokenizer):
    from peptide_losses.integrations.casanovo import MassLossSettings, MassLossSpec2Pep

    torch.manual_seed(0)
    model = MassLossSpec2Pep(dim_model=32, n_head=2, dim_feedforward=32, n_layers=1, tokenizer=tokenizer)
    weights = Recommendation(spectrum_weight=0.5, precursor_weight=0.01, ramp_start=0.2, ramp_end=0.6,
                             distance_scale=0.02)
    model.mass_loss_settings = MassLossSettings(weights=weights)
    model.log = lambda *args, **kwargs: None  # no Lightning trainer attached
    data, targets = real
    part = slice(0, 8)
    batch = model_batch(data, targets, part)
    pred, truth = model._forward_step(batch)
    logits = pred[:, :-1]
    ce = model.celoss(logits.reshape(-1, model.vocab_size), truth.flatten())
    spectrum, precursor = model.mass_losses()(logits, truth, data.mz[part], data.intensity[part],
                                              data.precursor_mz[part], data.charge[part], data.peak_mask[part])
    assert spectrum > 0 and precursor > 0
    for progress, ramp in ((0.1, 0.0), (0.4, 0.5), (0.9, 1.0)):
        model.training_progress = lambda: progress
        loss = model.training_step(batch)
        want = ce + ramp * (0.5 * spectrum + 0.01 * precursor)
        assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    model.zero_grad()
    loss.backward()
    with_mass = [p.grad.clone() for p in model.decoder.parameters() if p.grad is not None]
    model.zero_grad()
    ce.backward()
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_mass, model.decoder.parameters()))


def test_command_line_settings_and_model_runner_swap(casanovo):
    from casanovo.denovo import model_runner
    from casanovo.denovo.model import Spec2Pep

    from peptide_losses.integrations.casanovo import MassLossSpec2Pep, mass_losses_in_model_runner, settings_from_args

    settings, rest = settings_from_args(["--spectrum-weight", "0.2", "--isotope-errors", "0,1,2", "train",
                                         "a.mgf", "-p", "b.mgf", "-c", "c.yaml", "--help"])
    assert rest == ["train", "a.mgf", "-p", "b.mgf", "-c", "c.yaml", "--help"]
    assert settings.weights.spectrum_weight == 0.2 and settings.isotope_errors == (0, 1, 2)
    assert settings.weights.precursor_weight == RECOMMENDED.precursor_weight and settings.fold_n_terminal
    with pytest.raises(ValueError, match="ramp_start <= ramp_end"):
        settings_from_args(["--ramp-start", "0.9", "--ramp-end", "0.1", "train"])
    with mass_losses_in_model_runner(settings):
        assert model_runner.Spec2Pep is MassLossSpec2Pep and MassLossSpec2Pep.mass_loss_settings is settings
    assert model_runner.Spec2Pep is Spec2Pep and MassLossSpec2Pep.mass_loss_settings is not settings


def test_example_trains_casanovo_and_its_checkpoint_loads_as_plain_spec2pep(tmp_path, real, casanovo):
    """The example script: ``casanovo train`` with the losses, 1 epoch (4 steps of 32) on the real spectra."""
    from casanovo.denovo.model import Spec2Pep

    subprocess.run([sys.executable, str(EXAMPLE), "--out", str(tmp_path), "--epochs", "1", "--spectrum-weight",
                    "0.05", "--precursor-weight", "0.01", "--ramp-start", "0", "--ramp-end", "0"], check=True)
    with open(tmp_path / "csv_logs" / "metrics.csv") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train_spectrum_loss")]
    assert len(rows) == 1 and float(rows[0]["train_mass_loss_ramp"]) == 1.0
    for name in ("train_CELoss", "train_spectrum_loss", "train_precursor_loss"):
        assert math.isfinite(float(rows[0][name])) and float(rows[0][name]) > 0
    (checkpoint,) = tmp_path.glob("*.ckpt")
    model = Spec2Pep.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    # Extra constructor arguments would have landed in the optimizer's keyword arguments.
    assert type(model) is Spec2Pep and set(model.opt_kwargs) == {"lr", "weight_decay"}
    model.configure_optimizers()
    data, targets = real
    batch = model_batch(data, targets, slice(0, 4))
    scores, _ = model._forward_step(batch)
    assert scores.shape == (4, targets.shape[1] + 1, model.vocab_size) and torch.isfinite(scores).all()


def test_rerank_casanovos_beam_by_the_spectrum(real, tokenizer):
    """Spec2Pep's top_match candidates (N->C strings, best first) as token rows, scored and reranked (README recipe)."""
    from casanovo.denovo.model import Spec2Pep

    torch.manual_seed(0)
    model = Spec2Pep(dim_model=32, n_head=2, dim_feedforward=32, n_layers=1, tokenizer=tokenizer, n_beams=5,
                     top_match=5, max_peptide_len=12).eval()
    with torch.no_grad():
        # Casanovo keeps only the beams that stop, and a random decoder seldom predicts its stop token
        # within 12 steps: favoured, the beams stop at various lengths (some spectra keep none).
        model.decoder.final.bias[tokenizer.stop_int] += 2.0
        data, targets = real
        batch = model_batch(data, targets, slice(0, 6))
        predictions = model(batch)
    counts = [len(beam) for beam in predictions]
    assert 0 < sum(counts) and min(counts) < 5, f"the beam should hold candidates and an empty slot: {counts}"
    weight = 1e6  # large: the spectrum decides among the candidates in tolerance

    vocab = Vocabulary.from_casanovo(tokenizer)
    mz, intensity = batch["mz_array"], batch["intensity_array"]
    rows = candidate_tokens([[sequence for _, _, sequence in beam] for beam in predictions], vocab, beam_size=5,
                            device=mz.device)
    model_scores = candidate_scores([[score for score, _, _ in beam] for beam in predictions], rows.present)
    scores = spectrum_scores(rows.tokens, mz, intensity, masses=vocab, peak_mask=mz > 0)
    ppm = candidate_ppm(rows.tokens, vocab, batch["precursor_mz"], batch["precursor_charge"], isotope_errors=(0, 1))
    choice = rerank(rows.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=20.0,
                    spectrum_scores=scores, weight=weight)
    best = [vocab.decode(row) for row in choice.tokens]  # N->C, "" where the beam was empty

    assert rows.tokens.shape[:2] == (6, 5) and rows.present.sum(1).tolist() == counts
    masses = vocab.mass_tensor()
    own_ppm = torch.full((6, 5), torch.nan, dtype=torch.float64)  # Casanovo's m/z, isotope 0
    for b, beam in enumerate(predictions):
        observed = batch["precursor_mz"][b].double()
        for k, (_, aa_scores, sequence) in enumerate(beam):
            row = rows.tokens[b, k]
            n = int(row.count_nonzero())
            assert n == len(aa_scores) and vocab.decode(row) == sequence
            # Casanovo's own token indices run C->N; the row is them flipped.
            assert row[:n].flip(0).tolist() == tokenizer.tokenize([sequence])[0].tolist()
            residues = sum(tokenizer.residues[token] for token in tokenizer.split(sequence))
            assert masses[row].sum().item() == pytest.approx(residues, abs=1e-9)
            theirs = tokenizer.calculate_precursor_ions([sequence], batch["precursor_charge"][b:b + 1]).double()
            own_ppm[b, k] = ((theirs - observed).abs() / observed * 1e6).item()
    assert torch.isfinite(scores[rows.present]).all() and scores[~rows.present].isposinf().all()
    # The spectrum decides among the candidates, never an empty slot (all candidates are out of tolerance).
    assert (ppm[rows.present] > 20.0).all()
    # A spectrum whose beam Casanovo left empty has no candidate to choose: index -1 (decoding.rerank).
    alive = rows.present.any(1)
    assert torch.equal(choice.index, torch.where(alive, scores.where(rows.present, torch.inf).argmin(1), -1))
    assert best == [beam[i][2] if beam else "" for beam, i in zip(predictions, choice.index.tolist())]

    # Weight 0 with Casanovo's own scores: Casanovo's first (best) candidate.
    plain = rerank(rows.tokens, model_scores)
    assert plain.index.tolist() == [0 if beam else -1 for beam in predictions]
    assert [vocab.decode(t) for t in plain.tokens] == [beam[0][2] if beam else "" for beam in predictions]
    # With the precursor: the first of Casanovo's candidates within a tolerance that splits them.
    isotope0 = candidate_ppm(rows.tokens, vocab, batch["precursor_mz"], batch["precursor_charge"])
    torch.testing.assert_close(isotope0[rows.present], own_ppm[rows.present], rtol=0, atol=0.5)
    values = own_ppm[rows.present].unique()
    tolerance = float(values[len(values) // 2 - 1: len(values) // 2 + 1].mean())
    fits = own_ppm <= tolerance
    want = [beam_fits.int().argmax().item() if beam_fits.any() else (0 if beam else -1)
            for beam_fits, beam in zip(fits, predictions)]
    assert 0 < fits[rows.present].sum() < rows.present.sum()
    assert rerank(rows.tokens, model_scores, precursor_ppm=isotope0, tolerance_ppm=tolerance).index.tolist() == want


FIRST8 = DATA / "casanovo_sample_first8.mgf"
TOP_MATCH = 3


@pytest.fixture(scope="module")
def casanovo_written(tmp_path_factory, casanovo):
    """The mzTab ``casanovo sequence`` itself writes (tiny random model, offline) for the 8 spectra of
    tests/data, as tests/data/casanovo-5.2.1_top3.mztab was written (tests/data/README.md)."""
    return casanovo_mztab(tmp_path_factory.mktemp("casanovo"), FIRST8, top_match=TOP_MATCH)


def test_casanovo_sequence_writes_an_mztab_with_top_match_psms_per_spectrum(casanovo_written):
    from pyteomics.mztab import MzTab

    mgf, top_match, mztab = FIRST8, TOP_MATCH, casanovo_written
    headers = [dict(line.strip().split("=", 1) for line in block.splitlines() if "=" in line)
               for block in mgf.read_text().split("END IONS")[:-1]]
    assert len(headers) == 8
    table = MzTab(str(mztab))
    assert table.version == "1.0.0" and table.metadata["software[1]"] == ("Casanovo", "5.2.1")
    assert table.metadata["ms_run[1]-location"] == mgf.resolve().as_uri()
    psms = table.spectrum_match_table
    assert psms["PSM_ID"].tolist() == list(range(1, len(psms) + 1))
    refs = psms["spectra_ref"].tolist()
    assert all(re.fullmatch(r"ms_run\[1\]:index=[0-7]", ref) for ref in refs), refs
    per_spectrum = psms.groupby("spectra_ref", sort=False)
    counts = {int(ref.rsplit("=", 1)[1]): len(rows) for ref, rows in per_spectrum}
    assert sorted(counts) == list(range(8)) and all(1 <= n <= top_match for n in counts.values()), counts
    assert sum(counts.values()) > 8, f"top_match {top_match} should keep several PSMs of some spectrum: {counts}"
    assert [int(ref.rsplit("=", 1)[1]) for ref in refs] == sorted(int(ref.rsplit("=", 1)[1]) for ref in refs)
    for ref, rows in per_spectrum:
        header = headers[int(ref.rsplit("=", 1)[1])]
        assert (rows["charge"] == int(header["CHARGE"].rstrip("+"))).all()
        assert rows["exp_mass_to_charge"].tolist() == pytest.approx([float(header["PEPMASS"])] * len(rows), rel=1e-7)
        scores = rows["search_engine_score[1]"].tolist()
        assert scores == sorted(scores, reverse=True) and all(0 < score <= 1 for score in scores)
    # `sequence` is the ProForma peptidoform (opt_ column) without its modifications.
    proforma = psms["opt_global_cv_MS:1003169_proforma_peptidoform_sequence"]
    assert psms["sequence"].tolist() == [re.sub(r"\[[^]]*\]-?", "", seq) for seq in proforma]
    assert all(re.fullmatch(r"[A-Z]+", seq) for seq in psms["sequence"])
    # The committed fixture has what this run wrote: the same columns, its PSMs the same spectra.
    fixture = MzTab(str(DATA / "casanovo-5.2.1_top3.mztab")).spectrum_match_table
    assert fixture.columns.tolist() == psms.columns.tolist()
    assert set(fixture["spectra_ref"]) == set(refs)


def test_rescore_reranks_casanovos_own_mztab(casanovo_written, tmp_path):
    """`peptide-losses rescore` on the file Casanovo just wrote: at weight 0 every line comes back as
    Casanovo wrote it; at the default weight each spectrum keeps its own PSM rows, best first by the
    documented score, the tool's minus 100 x (spectrum score + 0.01 off the precursor)."""
    from pyteomics.mztab import MzTab

    from peptide_losses.cli import main

    same, rescored = tmp_path / "same.mztab", tmp_path / "rescored.mztab"
    assert main(["rescore", str(casanovo_written), str(FIRST8), "-o", str(same), "--weight", "0",
                 "--backend", "reference"]) == 0
    for old, new in zip(casanovo_written.read_text().splitlines(), same.read_text().splitlines(), strict=True):
        assert new.split("\t")[:len(old.split("\t"))] == old.split("\t")
    assert main(["rescore", str(casanovo_written), str(FIRST8), "-o", str(rescored), "--backend", "reference"]) == 0
    before = MzTab(str(casanovo_written)).spectrum_match_table
    after = MzTab(str(rescored)).spectrum_match_table
    assert before["spectra_ref"].tolist() == after["spectra_ref"].tolist()
    for ref, rows in after.groupby("spectra_ref", sort=False):
        assert sorted(rows["PSM_ID"]) == sorted(before[before["spectra_ref"] == ref]["PSM_ID"])
        scores = rows["search_engine_score[1]"].tolist()
        assert scores == sorted(scores, reverse=True)
        penalty = 0.01 * (rows["opt_global_precursor_ppm"].abs() > 20)
        expected = rows["opt_global_original_score"] - 100 * (rows["opt_global_spectrum_score"] + penalty)
        assert scores == pytest.approx(expected.tolist(), rel=1e-6)  # float32 spectrum scores


def test_casanovo_beam_benchmark_smoke_run(casanovo):
    """The Casanovo beam benchmark's smoke mode times Casanovo's own beam search, with its whole stack (no
    module stood in for), and stops at ``max_peptide_len``: one decoder call for the first token, at most
    one per later step."""
    from benchmarks.sequencing import casanovo_beam

    table = casanovo_beam.main(["--smoke", "--max-peptide-len", "5"])
    assert "Modules stood in for: none." in table and "`max_peptide_len` 5" in table
    row = next(line.split("|") for line in table.splitlines() if line.startswith("| 2 | 4 |"))
    assert float(row[4]) > 0 and 2 <= float(row[5]) <= 6
