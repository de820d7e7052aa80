"""End-to-end trainer runs: it learns, resumes exactly, diagnoses, reads real data.

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

from peptide_losses.train.checkpoint import load_checkpoint
from peptide_losses.train.cli import main
from peptide_losses.train.config import load_config
from peptide_losses.train.diagnose import diagnose
from peptide_losses.train.objective import LOSS_NAMES
from peptide_losses.train.recorder import read_records
from peptide_losses.train.trainer import build
from peptide_losses.train.data import SimulatedTraining
from peptide_losses import Vocabulary

TINY = {
    "backend": "reference",
    "batch_size": 16,
    "model": {"dim": 64, "heads": 4, "ff_dim": 128, "encoder_layers": 1, "cycles": 2, "inner_steps": 1},
    "optimizer": {"lr": 0.003, "warmup_steps": 5},
    "logging": {"every": 5, "validate_every": 1000, "validation_size": 32, "progress": False, "tensorboard": False},
}


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


def test_short_run_learns(tmp_path):
    """150 small steps (~10 s): CE falls, the objective falls at fixed weights, accuracy rises."""
    steps = 150
    out = tmp_path / "run"
    config = write_config(tmp_path, steps=steps, logging={"tensorboard": True})
    assert main(["--config", str(config), "--out", str(out)]) == 0
    records = read_records(out)
    ce = train_series(records, "train/ce_final")
    assert len(ce) == steps // 5
    assert max(ce[-3:]) < 0.85 * ce[0]
    # The schedule raises the mass-loss weights as it goes; judged under the final weights the objective fell.
    last = [r for r in records if "train/ce" in r][-1]
    final = {k: last[f"curriculum/{k}_weight"] for k in LOSS_NAMES}
    names = {"ce": "train/ce", "spectrum": "train/spectrum_loss", "precursor": "train/precursor_loss"}
    objective = [sum(final[k] * r[names[k]] for k in LOSS_NAMES) for r in records if "train/ce" in r]
    assert objective[-1] < objective[0]
    accuracy = train_series(records, "train/token_accuracy")
    assert min(accuracy[-3:]) > accuracy[0] + 0.02
    for name in ("metrics.csv", "metrics.jsonl", "last.pt", "curves.png", "final_metrics.json", "train.log"):
        assert (out / name).is_file(), name
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    else:
        assert "TensorBoard logging off" in (out / "train.log").read_text()
    final_metrics = json.loads((out / "final_metrics.json").read_text())
    for split in ("easy", "hard"):
        for metric in ("aa_precision", "aa_recall", "peptide_recall", "token_accuracy", "ppm_error"):
            assert f"val/{split}/{metric}" in final_metrics
    for name in ("train/ce_final", "train/token_accuracy", "train/sequence_accuracy", "train/ppm_error",
                 "train/spectrum_loss", "train/precursor_loss", "train/total_loss", "curriculum/spectrum_weight",
                 "curriculum/precursor_weight", "share/precursor"):
        assert name in records[0]


def test_resume_continues_exactly(tmp_path):
    """Killed at step 6 and resumed, a run logs the same losses and ends with the same weights."""
    config = write_config(tmp_path, steps=12, checkpoint_every=3, logging={"every": 1})
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    main(["--config", str(config), "--out", str(whole)])
    main(["--config", str(config), "--out", str(parts), "--stop-after", "6"])
    assert load_checkpoint(parts)["step"] == 6
    main(["--resume", str(parts)])
    a, b = read_records(whole), read_records(parts)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra == rb, (ra, rb)
    sa, sb = load_checkpoint(whole), load_checkpoint(parts)
    assert sa["step"] == sb["step"] == 12
    for name, tensor in sa["model"].items():
        assert torch.equal(tensor, sb["model"][name]), name


def test_resume_drops_the_records_the_killed_run_wrote_after_its_checkpoint(tmp_path):
    config = write_config(tmp_path, steps=10, checkpoint_every=5, logging={"every": 1})
    out = tmp_path / "run"
    main(["--config", str(config), "--out", str(out), "--stop-after", "5"])
    # Pretend the killed run had logged two more steps after its last checkpoint.
    with open(out / "metrics.jsonl", "a") as f:
        for step in (6, 7):
            f.write(json.dumps({"step": step, "train/ce_final": 99.0}) + "\n")
    main(["--resume", str(out)])
    steps = [r["step"] for r in read_records(out) if "train/ce_final" in r]
    assert steps == list(range(1, 11)) and 99.0 not in train_series(read_records(out), "train/ce_final")


def test_diagnosis_reports_each_loss_weight_and_share():
    config = load_config(overrides=tiny(steps=100))
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
    assert 0 <= final["val/real/aa_recall"] <= 1 and final["val/real/ppm_error"] > 0
    assert load_checkpoint(out)["config"]["data"] == str(real_mgf)


def test_runs_under_torchrun_with_two_processes(tmp_path):
    config = write_config(tmp_path, steps=4, batch_size=4, logging={"every": 2, "validation_size": 8})
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "peptide_losses.train", "--config", str(config), "--out", str(out)],
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
