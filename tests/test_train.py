"""End-to-end trainer runs: it learns, resumes exactly (and refuses what it cannot resume), diagnoses, reads real data.

The runs use a tiny model and ``backend="reference"``: CI sets TRITON_INTERPRET=1,
under which ``"auto"`` would run the interpreted kernels, far too slowly for
a training loop (the kernels are tested against the reference elsewhere).
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from peptide_losses.train.checkpoint import compact, load_checkpoint
from peptide_losses.train.cli import main
from peptide_losses.train.config import load_config
from peptide_losses.train.diagnose import diagnose
from peptide_losses.train.objective import LOSS_NAMES
from peptide_losses.train.recorder import read_records
from peptide_losses.train.trainer import build, train
from peptide_losses.train.data import SimulatedTraining
from peptide_losses.train.simulate import SpectrumSimulator, generator, split_peptides
from peptide_losses.spectra import Preprocessing
from peptide_losses import Vocabulary

TINY = {
    "backend": "reference",
    "batch_size": 16,
    "model": {"dim": 64, "heads": 4, "ff_dim": 128, "encoder_layers": 1, "decoder_layers": 1, "cycles": 2,
              "inner_steps": 1},
    "optimizer": {"lr": 0.003, "warmup_steps": 5},
    "simulation": {"proteins": 150},
    "decoding": {"beam_size": 2},
    "logging": {"every": 5, "validate_every": 1000, "validation_size": 32, "progress": False, "tensorboard": False},
}


#: The seed's staged weights (the trainer's default is CE alone: README, "Do the mass losses help?").
SEED_SCHEDULE = {"spectrum_weights": [0, .05, .08, .10, .12, .13, .14, .14, .15, .15],
                 "precursor_weights": [0, .01, .02, .03, .04, .05, .06, .07, .08, .10]}


def tiny(**overrides):
    settings = json.loads(json.dumps(TINY))
    for key, value in overrides.items():
        if isinstance(value, dict):
            settings.setdefault(key, {}).update(value)
        else:
            settings[key] = value
    return settings


def write_config(tmp_path, **overrides):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny(**overrides)))
    return path


def train_series(records, name):
    return [r[name] for r in records if name in r]


def test_short_run_logs_every_metric_and_writes_every_output(tmp_path):
    """40 small steps with both mass losses on (the seed's schedule, balanced): the outputs a user looks
    at all exist and hold what they say."""
    steps = 40
    out = tmp_path / "run"
    # Logged every 4 steps = every stage of the 10-stage schedule; the balancer moves its factors at
    # logging steps: the weights are constant within an interval.
    config = write_config(tmp_path, steps=steps, logging={"tensorboard": True, "every": 4}, schedule=SEED_SCHEDULE,
                          balancing={"enabled": True})
    assert main(["--config", str(config), "--out", str(out)]) == 0
    records = read_records(out)
    assert len(train_series(records, "train/ce_final")) == steps // 4
    # Every training record's total is the weighted sum of its own loss means (value weighting, factors = weights).
    for r in (r for r in records if "train/ce" in r):
        expected = (r["curriculum/ce_weight"] * r["train/ce"] + r["train/spectrum_factor"] * r["train/spectrum_loss"]
                    + r["train/precursor_factor"] * r["train/precursor_loss"])
        assert r["train/total_loss"] == pytest.approx(expected, rel=1e-5)
        assert r["time/spectra_per_s"] == pytest.approx(r["time/steps_per_s"] * 16)
    for name in ("metrics.csv", "metrics.jsonl", "last.pt", "curves.png", "final_metrics.json", "train.log"):
        assert (out / name).is_file(), name
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    else:
        assert "TensorBoard logging off" in (out / "train.log").read_text()
    final_metrics = json.loads((out / "final_metrics.json").read_text())
    # The log ends with the split x decoding table and the closing line, not the list of every metric.
    log_lines = (out / "train.log").read_text().splitlines()
    # a header, one row per split x decoding (4 x 3: the simulated splits and, by default, the two
    # shipped real sets), the closing line with this run's own best recall per split
    table = log_lines[-14:]
    assert "peptide recall" in table[0] and "this run's best peptide recall per split: easy " in table[-1]
    best_easy = max(final_metrics[f"val/easy/{d}/peptide_recall"] for d in ("greedy", "precursor_beam", "spectrum_rerank"))
    assert f"easy {best_easy:.3f} (" in table[-1]
    assert sum("spectrum_rerank" in line for line in table) == 4
    assert not any(" = " in line for line in table)
    for split in ("easy", "hard", "casanovo-sample", "massivekb-test"):
        assert f"val/{split}/ce" in final_metrics
        for decoding in ("greedy", "precursor_beam", "spectrum_rerank"):
            for metric in ("aa_precision", "aa_recall", "peptide_recall", "token_accuracy", "ppm_error",
                           "precursor_match"):
                assert 0 <= final_metrics[f"val/{split}/{decoding}/{metric}"] < float("inf")
    for name in ("train/ce_final", "train/token_accuracy", "train/sequence_accuracy", "train/ppm_error",
                 "train/spectrum_loss", "train/precursor_loss", "train/total_loss", "curriculum/spectrum_weight",
                 "curriculum/precursor_weight", "share/precursor", "balancing/precursor_factor", "time/data_ms",
                 "time/compute_ms"):
        assert name in records[0]


def write_simulated_mgf(path, count, seed=0):
    """``count`` simulated easy spectra as an annotated MGF (pyteomics' writer)."""
    from pyteomics import mgf

    config = load_config(overrides=tiny())
    _, peptides = split_peptides(0.1, 150)
    batch = SpectrumSimulator(peptides, config.simulation.easy, Vocabulary.default(), Preprocessing(),
                              config.max_length).sample(count, generator("cpu", seed))
    entries = []
    for row in range(count):
        keep = batch.peak_mask[row]
        entries.append({
            "m/z array": batch.mz[row][keep].double().numpy(), "intensity array": batch.intensity[row][keep].double().numpy(),
            "params": {"title": f"sim{row}", "pepmass": float(batch.precursor_mz[row]), "charge": [int(batch.charge[row])],
                       "seq": Vocabulary.default().decode(batch.tokens[row][batch.mask[row]].tolist())},
        })
    mgf.write(entries, str(path))


def test_overfits_a_few_dozen_spectra(tmp_path):
    """A tiny model learns 32 spectra by heart: the pipeline (data, model, CE, optimiser, decoding) can learn."""
    data = tmp_path / "few.mgf"
    write_simulated_mgf(data, 32)
    config = write_config(tmp_path, steps=250, batch_size=32, optimizer={"lr": 0.003, "warmup_steps": 20},
                          model={"dim": 64, "heads": 4, "ff_dim": 256, "encoder_layers": 1, "decoder_layers": 2},
                          logging={"every": 50, "validation_size": 8},
                          schedule={"spectrum_weights": [0.0], "precursor_weights": [0.0]}, balancing={"enabled": False})
    out = tmp_path / "run"
    assert main(["--config", str(config), "--data", str(data), "--val-data", f"same={data}", "--out", str(out)]) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    assert final["val/same/greedy/token_accuracy"] >= 0.9, final
    assert final["val/same/greedy/peptide_recall"] >= 0.8, final


def test_resume_continues_exactly(tmp_path):
    """Killed at step 6 and resumed, a run logs the same losses and ends with the same weights."""
    config = write_config(tmp_path, steps=12, checkpoint_every=3, logging={"every": 1})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(["--config", str(config), "--val-data", "none", "--out", str(whole)])
    main(["--config", str(config), "--val-data", "none", "--out", str(parts), "--stop-after", "6"])
    assert load_checkpoint(parts)["step"] == 6
    main(["--resume", str(parts), "--val-data", "none"])
    a, b = read_records(whole), read_records(parts)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    untimed = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    for ra, rb in zip(a, b):
        assert untimed(ra) == untimed(rb), (ra, rb)
    sa, sb = load_checkpoint(whole), load_checkpoint(parts)
    assert sa["step"] == sb["step"] == 12
    for name, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][name]), name


def test_resume_drops_the_records_the_killed_run_wrote_after_its_checkpoint(tmp_path):
    config = write_config(tmp_path, steps=10, checkpoint_every=5, logging={"every": 1})
    out = tmp_path / "run"
    main(["--config", str(config), "--val-data", "none", "--out", str(out), "--stop-after", "5"])
    # Pretend the killed run had logged two more steps after its last checkpoint.
    with open(out / "metrics.jsonl", "a") as f:
        for step in (6, 7):
            f.write(json.dumps({"step": step, "train/ce_final": 99.0}) + "\n")
    main(["--resume", str(out), "--val-data", "none"])
    steps = [r["step"] for r in read_records(out) if "train/ce_final" in r]
    assert steps == list(range(1, 11)) and 99.0 not in train_series(read_records(out), "train/ce_final")


def test_compact_checkpoint_resumes_and_fits_the_gpu_preset_in_16_mib(tmp_path):
    config = write_config(tmp_path, steps=6, checkpoint_every=3, logging={"every": 1})
    out = tmp_path / "run"
    main(["--config", str(config), "--val-data", "none", "--out", str(out), "--stop-after", "3"])
    full, small = load_checkpoint(out / "last.pt"), load_checkpoint(out / "compact.pt")
    assert small["optimizer"] is None and small["step"] == full["step"] == 3
    for name, tensor in full["model"].items():
        assert torch.equal(small["model"][name], tensor.to(torch.bfloat16)), name
    main(["--resume", str(out / "compact.pt"), "--val-data", "none"])
    assert load_checkpoint(out)["step"] == 6 and "not an exact resume" in (out / "train.log").read_text()
    # The GPU preset's model: its compact checkpoint can travel through a 16 MiB file limit.
    preset = load_config(preset="gpu", overrides={"device": "cpu"})
    model, _ = build(preset, Vocabulary.default(), "cpu")
    path = tmp_path / "preset.pt"
    torch.save(compact({"model": model.state_dict(), "optimizer": {}, "config": preset.to_dict()}), path)
    assert model.n_parameters() > 7_000_000 and path.stat().st_size < 16 * 2**20


def test_resume_refuses_another_vocabulary_or_model_and_writes_nothing(tmp_path, monkeypatch):
    config = write_config(tmp_path, steps=6, checkpoint_every=3, logging={"every": 1})
    out = tmp_path / "run"
    main(["--config", str(config), "--val-data", "none", "--out", str(out), "--stop-after", "3"])
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "train.log"}
    bigger = load_config(overrides=tiny(steps=6, checkpoint_every=3, model={"dim": 128}))
    with pytest.raises(ValueError, match=r"model\.dim \(checkpoint 64, this run 128\)"):
        train(bigger, out, resume=out)
    other = Vocabulary.from_tokens([t for t in Vocabulary.default().tokens[1:] if t != "M[Oxidation]"] + ["M[+15.995]"])
    monkeypatch.setattr(Vocabulary, "default", classmethod(lambda cls: other))
    with pytest.raises(ValueError, match="another vocabulary"):
        main(["--resume", str(out), "--val-data", "none"])
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "train.log"}
    assert after == before


def test_init_from_continues_a_checkpoint_under_new_settings(tmp_path, capsys):
    """--init-from: the checkpoint's weights and step, this command's losses (here the mass losses
    turned on, as the late-stage ablation does); another model shape, or --resume with it, is refused."""
    base = write_config(tmp_path, steps=6, checkpoint_every=3, logging={"every": 1})
    out = tmp_path / "base"
    main(["--config", str(base), "--out", str(out), "--stop-after", "3"])
    weights = {"spectrum_weights": [0.1], "precursor_weights": [0.1]}
    late = tmp_path / "late.json"
    late.write_text(json.dumps(tiny(steps=6, logging={"every": 1}, schedule=weights,
                                    losses={"weighting": "gradient"})))
    continued = tmp_path / "late"
    main(["--config", str(late), "--init-from", str(out / "compact.pt"), "--out", str(continued)])
    records = read_records(continued)
    assert [r["step"] for r in records if "train/ce" in r] == [4, 5, 6]
    assert all(r["curriculum/spectrum_weight"] == 0.1 for r in records if "train/ce" in r)
    assert load_checkpoint(continued)["config"]["losses"]["weighting"] == "gradient"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(tiny(steps=6, model={"dim": 128})))
    with pytest.raises(ValueError, match=r"model\.dim \(checkpoint 64, this run 128\)"):
        main(["--config", str(other), "--init-from", str(out / "compact.pt"), "--out", str(tmp_path / "x")])
    assert main(["--init-from", str(out / "compact.pt"), "--resume", str(out)]) == 2
    assert "pass one of them" in capsys.readouterr().err


def test_a_config_error_is_one_line_without_a_traceback(tmp_path, capsys):
    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"losses": {"spectrum": {"distance_scal": 0.1}}}))
    assert main(["--config", str(typo), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "distance_scal" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error_before_the_run_folder(tmp_path, capsys):
    config = write_config(tmp_path, steps=2)
    assert main(["--config", str(config), "--device", "cuda", "--out", str(tmp_path / "run")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_diagnosis_reports_each_loss_weight_and_share():
    config = load_config(overrides=tiny(steps=100, schedule=SEED_SCHEDULE))
    vocabulary = Vocabulary.default()
    model, objective = build(config, vocabulary, "cpu")
    batch = SimulatedTraining(config, vocabulary).batch(0)
    result = diagnose(model, objective, batch, config, step=95)
    assert result.weights == {"ce": 1.0, "spectrum": 0.15, "precursor": 0.10}
    total = sum(result.values[k] * result.weights[k] for k in LOSS_NAMES)
    for k in LOSS_NAMES:
        assert result.shares[k] == pytest.approx(result.values[k] * result.weights[k] / total)
    assert result.stages[0][1] == {"ce": 1.0, "spectrum": 0.0, "precursor": 0.0}
    # An untrained model's predicted precursor is ~1e5 ppm off: the precursor loss dominates.
    assert result.shares["precursor"] > 0.9
    text = result.format()
    assert "precursor would be" in text and f"{result.shares['precursor']:.1%}" in text
    for k in LOSS_NAMES:
        assert f"{result.values[k]:.5g}" in text


def test_diagnose_command_prints_the_table(tmp_path, capsys):
    config = write_config(tmp_path, steps=20, schedule={"spectrum_weights": [0.0, 0.0], "precursor_weights": [0.0, 0.0]})
    assert main(["--config", str(config), "--diagnose"]) == 0
    out = capsys.readouterr().out
    assert "losses at step 0" in out and "WARNING" not in out
    for name in LOSS_NAMES:
        assert name in out


def test_trains_and_validates_on_real_spectra(tmp_path, real_mgf):
    config = write_config(tmp_path, steps=4, logging={"every": 2})
    out = tmp_path / "real"
    assert main(["--config", str(config), "--data", str(real_mgf), "--val-data", f"real={real_mgf}",
                 "--out", str(out)]) == 0
    final = json.loads((out / "final_metrics.json").read_text())
    assert 0 <= final["val/real/greedy/aa_recall"] <= 1 and final["val/real/greedy/ppm_error"] > 0
    assert load_checkpoint(out)["config"]["data"] == str(real_mgf)


def test_runs_under_torchrun_with_two_processes(tmp_path):
    config = write_config(tmp_path, steps=4, batch_size=4, logging={"every": 2, "validation_size": 8})
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "peptide_losses.train", "--config", str(config), "--val-data", "none", "--out", str(out)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in (out / "train.log").read_text()
    assert load_checkpoint(out)["step"] == 4


def test_printed_config_round_trips_through_config(tmp_path, capsys):
    assert main(["--print-config", "--steps", "5", "--batch-size", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["steps"] == 5 and printed["batch_size"] == 3
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(printed))
    main(["--config", str(path), "--print-config"])
    assert json.loads(capsys.readouterr().out) == printed
