"""Do the mass losses help? The same training run with them on and off.

Two runs of ``peptide_losses.train`` with the same seed, steps and data:

- ``on``: the default objective, CE + staged spectrum and precursor losses;
- ``off``: CE only (every mass-loss weight 0, no balancing); the mass losses
  are still evaluated, for the logs.

Both are validated on the simulated hard split (and on the real annotated
spectra in ``../shared/data`` when present); the table compares token
accuracy, Casanovo's peptide recall and amino-acid precision / recall, and the
median precursor error (ppm) of the decoded predictions.

Run (GPU; a run that stops early is resumed when the command is repeated)::

    python -m benchmarks.train_mass_losses_ablation --device cuda --steps 3000 --out runs/ablation

It prints a Markdown table and writes it, with the numbers as JSON, into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from peptide_losses.paths import real_spectra_path
from peptide_losses.train.checkpoint import CHECKPOINT_NAME
from peptide_losses.train.config import load_config
from peptide_losses.train.trainer import FINAL_METRICS, train

METRICS = ("token_accuracy", "peptide_recall", "aa_precision", "aa_recall", "ppm_error")


def mass_losses_off(n_stages: int) -> dict:
    zeros = [0.0] * n_stages
    return {"schedule": {"spectrum_weights": zeros, "precursor_weights": zeros}, "balancing": {"enabled": False}}


def run(name: str, overrides: dict, args, extra_validation: dict) -> dict:
    """Train (or resume, or reuse) one arm; its final metrics."""
    out = Path(args.out) / name
    if (out / FINAL_METRICS).is_file():
        return json.loads((out / FINAL_METRICS).read_text())
    config = load_config(args.config, overrides)
    resume = out if (out / CHECKPOINT_NAME).is_file() else None
    print(f"== {name}: {'resuming' if resume else 'training'} into {out}", flush=True)
    train(config, out, resume=resume, stop_after=args.stop_after, extra_validation=extra_validation)
    if not (out / FINAL_METRICS).is_file():
        raise SystemExit(f"{name} stopped before step {config.steps}; run the same command again to continue")
    return json.loads((out / FINAL_METRICS).read_text())


def table(results: dict[str, dict], splits: list[str]) -> str:
    lines = ["| split | mass losses | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
    for split in splits:
        for arm, final in results.items():
            cells = [f"{final.get(f'val/{split}/{m}', float('nan')):.4g}" for m in METRICS]
            lines.append(f"| {split} | {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="auto", choices=("auto", "triton", "reference"))
    p.add_argument("--config", help="settings shared by both arms (JSON/TOML), e.g. a larger model")
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--stop-after", type=int, help="stop each arm at this step (repeat the command to continue)")
    args = p.parse_args(argv)

    common = {"device": args.device, "steps": args.steps, "batch_size": args.batch_size, "seed": args.seed,
              "backend": args.backend, "logging": {"progress": False}}
    n_stages = len(load_config(args.config).schedule.spectrum_weights)
    extra = {"real": real_spectra_path()} if real_spectra_path().is_file() else {}
    results = {
        "on": run("on", common, args, extra),
        "off": run("off", {**common, **mass_losses_off(n_stages)}, args, extra),
    }
    text = table(results, ["hard", "easy", *extra])
    print(text)
    out = Path(args.out)
    (out / "ablation.md").write_text(text + "\n")
    (out / "ablation.json").write_text(json.dumps({"settings": common, "results": results}, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
