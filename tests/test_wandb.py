"""The trainer's Weights & Biases logging, with wandb itself in offline mode (no account, no network).
Runs where wandb is installed (``pip install -e ".[test,wandb]"``); CI installs it in an environment
of its own and fails these tests without it (tests/conftest.py).
"""

import pytest

from peptide_losses.train.cli import main
from peptide_losses.train.recorder import read_records

from test_train import write_config


def test_a_run_logs_its_metrics_and_config_to_an_offline_wandb_run(wandb, tmp_path, monkeypatch):
    """Every record the run writes to metrics.jsonl reaches the real wandb run, at its step, and the run's
    config travels with it; the offline run file is written inside the run folder."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    runs, logged = [], []
    real_init = wandb.init

    def init(*args, **kwargs):
        run = real_init(*args, **kwargs)
        real_log = run.log
        # The real log, watched: wandb 0.31's offline file is read only by its own Go core.
        run.log = lambda values, step=None, **kw: (logged.append((step, dict(values))), real_log(values, step=step, **kw))
        runs.append(run)
        return run

    monkeypatch.setattr(wandb, "init", init)
    out = tmp_path / "run"
    config = write_config(tmp_path, steps=10, logging={"every": 5, "wandb": {"enabled": True, "mode": "offline",
                                                                            "project": "peptide-losses-test"}})
    assert main(["--config", str(config), "--out", str(out)]) == 0
    (run,) = runs
    assert run.config["batch_size"] == 16 and run.config["logging"]["wandb"]["mode"] == "offline"
    records = read_records(out)
    by_step = {}
    for step, values in logged:
        by_step.setdefault(step, {}).update(values)
    assert sorted(by_step) == sorted({r["step"] for r in records})
    for record in records:
        for name, value in record.items():
            if name != "step":
                assert by_step[record["step"]][name] == pytest.approx(value, rel=1e-6), (record["step"], name)
    (offline,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    assert offline.stat().st_size > 0
