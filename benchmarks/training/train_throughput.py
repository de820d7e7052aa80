"""Training-step throughput of the trainer's models, and a check that a step never syncs.

``python -m benchmarks.training.train_throughput --preset gpu`` builds the preset's model
and data, runs warm-up steps, then times ``--steps`` steps: steps/s and
spectra/s (wall clock), and the device time of simulating a batch and of the
training step (CUDA events, as the trainer logs them). ``--variant`` repeats
the measurement for other settings (dotted JSON overrides, e.g.
``model.dim=128``). On CUDA the timed steps run under
``torch.cuda.set_sync_debug_mode("error")``: a step that reads the device on
the host raises. Results go to ``benchmarks/results/<gpu>/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from peptide_losses import Vocabulary
from peptide_losses.train.config import load_config, merge_settings
from peptide_losses.train.data import training_data
from peptide_losses.train.schedule import staged_weights
from peptide_losses.train.stopwatch import Stopwatch
from peptide_losses.train.trainer import STEP_VALUES, build, training_step

from ..environment import RESULTS_ROOT, describe, slug


def _dotted(text: str) -> dict:
    """``a.b=1`` -> ``{"a": {"b": 1}}`` (the value parsed as JSON, else kept as a string)."""
    key, _, raw = text.partition("=")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def measure(preset: str | None, overrides: dict, steps: int, warmup: int) -> dict:
    config = load_config(overrides=overrides, preset=preset)
    device = torch.device(config.device)
    vocabulary = Vocabulary.default()
    model, objective = build(config, vocabulary, device)
    train_model = torch.compile(model) if config.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optimizer.lr, fused=device.type == "cuda")
    data = training_data(config, vocabulary, device)
    # The weights in force at the end of the run (the preset's schedule; balancing not applied).
    weights = staged_weights(config.schedule, config.steps - 1, config.steps)
    started = time.perf_counter()
    for step in range(warmup):
        training_step(train_model, objective, optimizer, data.batch(step), weights, config)
    if device.type == "cuda":
        torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    stopwatch = Stopwatch(device)
    sums = torch.zeros(len(STEP_VALUES), dtype=torch.float64, device=device)
    sync_checked = device.type == "cuda"
    if sync_checked:
        torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(warmup, warmup + steps):
            stopwatch.start()
            batch = data.batch(step)
            stopwatch.lap("data")
            sums += training_step(train_model, objective, optimizer, batch, weights, config)
            stopwatch.lap("compute")
    finally:
        if sync_checked:
            torch.cuda.set_sync_debug_mode("default")
    timing = stopwatch.pop()
    return {
        "preset": preset, "overrides": overrides, "parameters": model.n_parameters(), "batch_size": config.batch_size,
        "precision": config.precision, "compile": config.compile, "warmup_steps": warmup, "warmup_s": warmup_s,
        "timed_steps": steps, "steps_per_s": timing["steps_per_s"],
        "spectra_per_s": timing["steps_per_s"] * config.batch_size, "data_ms": timing["data_ms"],
        "compute_ms": timing["compute_ms"], "no_host_sync": sync_checked, "mean_ce": float(sums[0]) / steps,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpu")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--set", default="", metavar="KEY=VALUE[,KEY=VALUE]", help="settings of every measurement")
    p.add_argument("--variant", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="another setting to measure beside the preset's own (repeatable)")
    p.add_argument("--out", help="results folder (default benchmarks/results/<gpu>)")
    args = p.parse_args(argv)
    def parse(text: str) -> dict:
        overrides: dict = {}
        for item in filter(None, text.split(",")):
            overrides = merge_settings(overrides, _dotted(item))
        return overrides

    common = parse(args.set)
    rows = []
    for overrides in [{}, *map(parse, args.variant)]:
        row = measure(args.preset, merge_settings(common, overrides), args.steps, args.warmup)
        rows.append(row)
        print(json.dumps(row), flush=True)
    device = torch.device(load_config(overrides=common, preset=args.preset).device)
    env = describe(device)
    out = Path(args.out) if args.out else RESULTS_ROOT / slug(env["device"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_throughput.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    print(f"{'variant':<48} {'params':>9} {'steps/s':>8} {'spectra/s':>10} {'data ms':>8} {'step ms':>8}")
    for row in rows:
        print(f"{json.dumps(row['overrides']) or '{}':<48} {row['parameters']:>9} {row['steps_per_s']:>8.1f} "
              f"{row['spectra_per_s']:>10.0f} {row['data_ms']:>8.2f} {row['compute_ms']:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
