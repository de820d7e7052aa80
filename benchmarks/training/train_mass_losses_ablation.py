"""Do the mass losses help? Equal-step training runs with and without them, over seeds.

Each arm is a set of settings over a preset (default ``gpu``); each (arm, seed)
is one ``python -m peptide_losses.train`` run, and ``--parallel`` runs share the
GPU at once (the preset's model leaves most of an H200 idle, so concurrent runs
cost little wall time; throughput is not what this measures). Arms:

- ``ce_only``: cross-entropy alone (the preset as shipped).
- ``seed_schedule``: CE + both mass losses on the seed's staged weights
  (spectrum 0 -> 0.15, precursor 0 -> 0.10 from 10 % of the run), weights on loss values.
- ``seed_schedule_balanced``: the same with adaptive balancing of the loss shares.
- ``gradient``: CE + both mass losses from 30 % of the run, each rescaled so its
  gradient at the logits has 0.1 x the norm of CE's (``losses.weighting "gradient"``).

Every run validates at its end on the simulated easy and hard splits and on the
real spectra (``../shared/data``), with greedy and precursor-aware beam decoding.
The table gives the mean and the range over seeds of peptide recall, token
accuracy, precursor-match rate (decoded peptides within the decoding
tolerance, 20 ppm, isotope errors 0/1) and median ppm error.

Run (GPU)::

    python -m benchmarks.training.train_mass_losses_ablation --steps 2000 --arm ce_only=0,1,2 --arm gradient=0,1,2 \\
        --arm seed_schedule=0 --arm seed_schedule_balanced=0 --parallel 8 --out runs/ablation

Late-stage variant: ``--init-from runs/gpu/compact.pt --steps 11600`` continues a
converged CE-only preset run (fresh AdamW moments, the cosine schedule's tail) in every arm, with
each arm's losses from the first resumed step (the schedules above are fractions of ``--steps``).

It writes ``ablation.md`` (the table), ``ablation.json`` (every run's final metrics) and
``ablation.png`` (every run's training curves) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from peptide_losses.datasets import CASANOVO_SAMPLE
from peptide_losses.train.config import load_config, merge_settings, read_settings
from peptide_losses.train.trainer import FINAL_METRICS

SEED_SPECTRUM = [0.0, 0.05, 0.08, 0.10, 0.12, 0.13, 0.14, 0.14, 0.15, 0.15]
SEED_PRECURSOR = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.10]
FROM_30_PERCENT = [0.0, 0.0, 0.0] + [0.1] * 7

ARMS: dict[str, dict] = {
    "ce_only": {},
    "seed_schedule": {"schedule": {"spectrum_weights": SEED_SPECTRUM, "precursor_weights": SEED_PRECURSOR},
                      "losses": {"weighting": "value"}, "balancing": {"enabled": False}},
    "seed_schedule_balanced": {"schedule": {"spectrum_weights": SEED_SPECTRUM, "precursor_weights": SEED_PRECURSOR},
                               "losses": {"weighting": "value"}, "balancing": {"enabled": True}},
    "gradient": {"schedule": {"spectrum_weights": FROM_30_PERCENT, "precursor_weights": FROM_30_PERCENT},
                 "losses": {"weighting": "gradient"}, "balancing": {"enabled": False}},
}
#: (column title, metric under val/<split>/).
COLUMNS = (
    ("peptide recall, greedy", "greedy/peptide_recall"),
    ("peptide recall, precursor beam", "precursor_beam/peptide_recall"),
    ("token accuracy, greedy", "greedy/token_accuracy"),
    ("precursor match, greedy", "greedy/precursor_match"),
    ("precursor match, precursor beam", "precursor_beam/precursor_match"),
    ("median ppm, greedy", "greedy/ppm_error"),
)


def _arm_seeds(text: str) -> tuple[str, list[int]]:
    name, _, seeds = text.partition("=")
    if name not in ARMS:
        raise argparse.ArgumentTypeError(f"unknown arm {name!r} (known: {', '.join(ARMS)})")
    return name, [int(s) for s in seeds.split(",")] if seeds else [0]


def launch(arm: str, seed: int, args, out: Path) -> subprocess.Popen:
    """Start one run of the trainer CLI; its log goes to ``out/train.out``."""
    out.mkdir(parents=True, exist_ok=True)
    settings = merge_settings(read_settings(args.common) if args.common else {}, ARMS[arm])
    settings = merge_settings(settings, {"steps": args.steps, "seed": seed, "time_limit_minutes": args.time_limit,
                     "logging": {"validate_every": args.steps + 1, "progress": False}})
    (out / "arm.json").write_text(json.dumps(settings, indent=2))
    command = [sys.executable, "-m", "peptide_losses.train", "--preset", args.preset, "--config", str(out / "arm.json"),
               "--out", str(out)]
    if args.init_from:
        command += ["--init-from", args.init_from]
    if CASANOVO_SAMPLE.is_file():
        command += ["--val-data", f"real={CASANOVO_SAMPLE}"]
    return subprocess.Popen(command, stdout=open(out / "train.out", "w"), stderr=subprocess.STDOUT, env=os.environ.copy())


def summarise(results: dict[str, list[dict]], splits: list[str]) -> str:
    """Markdown table: per split and arm, the mean [min, max] over seeds of each column."""
    head = "| split | arm | seeds | " + " | ".join(title for title, _ in COLUMNS) + " |"
    lines = [head, "|---|---|---|" + "---|" * len(COLUMNS)]
    for split in splits:
        for arm, runs in results.items():
            cells = []
            for _, metric in COLUMNS:
                values = [run[f"val/{split}/{metric}"] for run in runs if f"val/{split}/{metric}" in run]
                if not values:
                    cells.append("-")
                    continue
                mean = statistics.fmean(values)
                cells.append(f"{mean:.3g}" if len(values) == 1 else f"{mean:.3g} [{min(values):.3g}, {max(values):.3g}]")
            lines.append(f"| {split} | {arm} | {len(runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_arms(root: Path, path: Path) -> None:
    """Training CE and token accuracy of every run under ``root``, one colour per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from peptide_losses.train.recorder import read_records

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    colours = dict(zip(ARMS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        arm = run.name.rsplit("-seed", 1)[0]
        records = [r for r in read_records(run) if "train/ce" in r]
        steps = [r["step"] for r in records]
        for ax, name in zip(axes, ("train/ce", "train/token_accuracy")):
            ax.plot(steps, [r[name] for r in records], color=colours.get(arm), alpha=0.8,
                    label=arm if run.name.endswith("seed0") else None)
    for ax, (title, label) in zip(axes, (("Training cross-entropy", "CE (nats per scored token)"),
                                         ("Training token accuracy (teacher forced)", "fraction"))):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="gpu")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--arm", type=_arm_seeds, action="append", required=True, metavar="NAME=SEED[,SEED...]")
    p.add_argument("--common", help="JSON/TOML settings of every run, under each arm's own")
    p.add_argument("--parallel", type=int, default=4, help="runs at once")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="each run stops (validated) at this wall time, a guard for a fixed budget (default none)")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="every run continues this checkpoint (e.g. a CE-only preset run's compact.pt): the mass "
                        "losses' effect on a model whose CE has converged")
    p.add_argument("--out", default="runs/ablation")
    args = p.parse_args(argv)
    load_config(args.common, preset=args.preset)  # bad settings fail here, before any run starts
    root = Path(args.out)
    queue = [(arm, seed) for arm, seeds in args.arm for seed in seeds]
    running: list[tuple[str, int, subprocess.Popen]] = []
    started = time.perf_counter()
    failed = []
    while queue or running:
        while queue and len(running) < args.parallel:
            arm, seed = queue.pop(0)
            running.append((arm, seed, launch(arm, seed, args, root / f"{arm}-seed{seed}")))
        time.sleep(2)
        for item in [r for r in running if r[2].poll() is not None]:
            running.remove(item)
            if item[2].returncode:
                failed.append(f"{item[0]}-seed{item[1]}")
            print(f"{item[0]} seed {item[1]} finished (exit {item[2].returncode}) at {time.perf_counter() - started:.0f} s",
                  flush=True)
    results: dict[str, list[dict]] = {}
    for arm, seeds in args.arm:
        for seed in seeds:
            path = root / f"{arm}-seed{seed}" / FINAL_METRICS
            if path.is_file():
                results.setdefault(arm, []).append(json.loads(path.read_text()))
    splits = ["easy", "hard"] + (["real"] if CASANOVO_SAMPLE.is_file() else [])
    text = summarise(results, splits)
    print(text)
    (root / "ablation.md").write_text(text + "\n")
    plot_arms(root, root / "ablation.png")
    (root / "ablation.json").write_text(json.dumps(
        {"preset": args.preset, "steps": args.steps, "init_from": args.init_from,
         "arms": {a: ARMS[a] for a in results}, "failed": failed, "results": results}, indent=2, sort_keys=True))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
