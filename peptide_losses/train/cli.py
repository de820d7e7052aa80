"""``python -m peptide_losses.train``: train, resume, or diagnose the loss scales.

Examples::

    python -m peptide_losses.train                          # CPU, simulated data, a few minutes
    python -m peptide_losses.train --preset gpu --out runs/gpu   # one GPU, about 8 minutes
    python -m peptide_losses.train --device cuda --steps 5000 --out runs/gpu
    python -m peptide_losses.train --data spectra.mgf --val-data held_out.mgf
    python -m peptide_losses.train --val-data none          # simulated validation only
    python -m peptide_losses.train --resume runs/gpu        # continue exactly
    python -m peptide_losses.train --diagnose [--resume runs/gpu]
    python -m peptide_losses.train --print-config > my.json   # edit, then --config my.json
    torchrun --nproc_per_node 4 -m peptide_losses.train --device cuda
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from ..checks import BACKENDS, checked_device
from ..datasets import REAL_SETS, REPORTED_SETS
from .checkpoint import load_checkpoint, resolve_checkpoint
from .config import config_from_dict, load_config, merge_settings, preset_names, with_defaults
from .summary import closing_line, summary_table

log = logging.getLogger("peptide_losses.train")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m peptide_losses.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help="a named config shipped with the package, applied over the defaults "
                                    "(known: %s)" % ", ".join(preset_names()))
    p.add_argument("--config", help="JSON or TOML file; its settings replace the defaults (default_config.json) "
                                    "and the preset's")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: config's, 'cpu')")
    p.add_argument("--steps", type=int, help="optimiser steps of the whole run (the schedule spans them)")
    p.add_argument("--batch-size", type=int, help="spectra per step and process")
    p.add_argument("--threads", type=int, dest="cpu_threads", help="torch CPU threads (default 1)")
    p.add_argument("--seed", type=int, help="seed of the model, the data and the validation splits")
    p.add_argument("--backend", choices=BACKENDS, help="implementation of the mass losses")
    p.add_argument("--data", help="annotated MGF to train on instead of simulated spectra")
    p.add_argument("--val-data", action="append", default=[], metavar="[NAME=]PATH.mgf",
                   help="annotated MGF, or a shipped real set (" + ", ".join(REAL_SETS) + "), to validate on "
                        "beside the simulated splits (repeatable; default: " + ", ".join(REPORTED_SETS) +
                        "; 'none': simulated splits only)")
    p.add_argument("--out", help="run folder (default runs/<date-time>, or the resumed run's folder)")
    p.add_argument("--resume", metavar="CHECKPOINT", help="checkpoint file or run folder to continue exactly")
    p.add_argument("--init-from", metavar="CHECKPOINT",
                   help="continue this checkpoint's weights and step under this command's settings (--preset, "
                        "--config), e.g. a converged cross-entropy run with the mass losses added; the model "
                        "settings must be the checkpoint's")
    p.add_argument("--stop-after", type=int, metavar="STEP",
                   help="stop with a checkpoint at this step (continue later with --resume)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the run's settings as JSON (a starting point for --config), then exit")
    p.add_argument("--diagnose", action="store_true",
                   help="print each loss, its weight and share of the total for the model and one batch, then exit")
    return p


def _overrides(args) -> dict:
    out: dict = {}
    for key, value in (("device", args.device), ("steps", args.steps), ("batch_size", args.batch_size),
                       ("seed", args.seed), ("cpu_threads", args.cpu_threads), ("backend", args.backend),
                       ("data", args.data)):
        if value is not None:
            out[key] = value
    if args.no_progress:
        out["logging"] = {"progress": False}
    return out


def _named_paths(values: list[str]) -> dict[str, str]:
    if not values:
        return {name: name for name in REPORTED_SETS}
    named = {}
    for value in values:
        if value == "none":
            continue
        name, _, path = value.rpartition("=")
        named[name or Path(path).stem] = path
    return named


def _config(args):
    """The run's config: the checkpoint's when resuming (CLI options still apply), else defaults + file."""
    if args.resume and args.init_from:
        raise ValueError("--resume continues a run as it was, --init-from under new settings: pass one of them")
    if args.resume:
        settings = with_defaults(load_checkpoint(args.resume)["config"])
        if args.config or args.preset:
            raise ValueError("--config and --preset cannot change a resumed run; its settings come from the checkpoint")
        return config_from_dict(merge_settings(settings, _overrides(args)))
    return load_config(args.config, _overrides(args), preset=args.preset)


def run_diagnosis(config, resume) -> str:
    """The diagnosis text for the config's model (or the checkpoint's) on one training batch."""
    from ..vocabulary import Vocabulary
    from .data import training_data
    from .diagnose import diagnose
    from .schedule import Balancer
    from .trainer import build

    vocabulary = Vocabulary.default()
    model, objective = build(config, vocabulary, config.device)
    balancer, step = Balancer(config.balancing), 0
    if resume:
        state = load_checkpoint(resume, map_location=config.device)
        model.load_state_dict(state["model"])
        balancer.load_state_dict(state["balancer"])
        step = state["step"]
    batch = training_data(config, vocabulary, config.device).batch(step).to(config.device)
    return diagnose(model, objective, batch, config, step=min(step, config.steps - 1), balancer=balancer).format()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(format=LOG_FORMAT)
    # The package's own INFO lines are wanted even when something else configured logging first.
    package_log = logging.getLogger("peptide_losses")
    package_log.setLevel(logging.INFO)
    try:
        config = _config(args)
        checked_device(config.device, "--device / device")  # before anything (the run folder) is made
    except (ValueError, OSError) as error:
        # A mistake in the command or the config: its message is the whole story, no traceback.
        print(f"python -m peptide_losses.train: error: {error}", file=sys.stderr)
        return 2
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if args.diagnose:
        print(run_diagnosis(config, args.resume or args.init_from))
        return 0
    from .trainer import FINAL_METRICS, train

    if args.out:
        out = Path(args.out)
    elif args.resume:
        out = resolve_checkpoint(args.resume).parent
    else:
        out = Path("runs") / time.strftime("run-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "train.log") if os.environ.get("RANK", "0") == "0" else logging.NullHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    package_log.addHandler(handler)
    try:
        log.info("run folder %s", out)
        final = train(config, out, resume=args.resume or args.init_from, stop_after=args.stop_after,
                      extra_validation=_named_paths(args.val_data))
        for line in summary_table(final):
            log.info("%s", line)
        log.info("%s; every final metric: %s", closing_line(final), out / FINAL_METRICS)
    finally:
        package_log.removeHandler(handler)
        handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
