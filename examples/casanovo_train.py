"""Train a tiny Casanovo model with the mass losses on the shared real spectra, on the CPU.

    python examples/casanovo_train.py --out runs/casanovo [--epochs 2] [--spectrum-weight 0.05 ...]

Needs ``pip install -e ".[casanovo]"``. It writes a small Casanovo config (one
transformer layer, width 64, batch 32: 4 steps per epoch over the 128 spectra,
which validate too) into ``--out`` and runs ``casanovo train`` through
:mod:`peptide_losses.integrations.casanovo`. Per-epoch losses land in
``--out/csv_logs/metrics.csv`` and the checkpoints in ``--out``, which load as
plain ``Spec2Pep``. Mass-loss options (``--spectrum-weight``...) pass through.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml
from casanovo.config import Config

from peptide_losses.integrations.casanovo import main as casanovo_with_mass_losses
from peptide_losses.datasets import CASANOVO_SAMPLE

#: Casanovo settings that shrink the model and run on the CPU; the rest are Casanovo's defaults.
TINY = dict(
    dim_model=64, n_head=2, dim_feedforward=128, n_layers=1, train_batch_size=32, predict_batch_size=32,
    accelerator="cpu", devices=1, warmup_iters=10, cosine_schedule_period_iters=100,
    val_check_interval=1_000_000, log_metrics=True, shuffle=False,
)


def run(out: Path, epochs: int, mass_loss_args: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    config = out / "config.yaml"
    defaults = yaml.safe_load(Config._default_config.read_text())  # Casanovo wants every option
    config.write_text(yaml.safe_dump({**defaults, **TINY, "max_epochs": epochs}))
    spectra = str(CASANOVO_SAMPLE)
    casanovo_with_mass_losses(
        [*mass_loss_args, "train", spectra, "-p", spectra, "-c", str(config), "-d", str(out), "-f", "-v", "warning"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=2)
    args, mass_loss_args = parser.parse_known_args()
    run(args.out, args.epochs, mass_loss_args)


if __name__ == "__main__":
    main()
