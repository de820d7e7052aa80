"""Where a beam step's time goes on the GPU (issue 36, item 2): the profiler's busiest kernels, the
host's time against the device's, and the beam under variants that would change it.

    python -m benchmarks.sequencing.beam_profile --device cuda      # one GPU, about a minute
    python -m benchmarks.sequencing.beam_profile --smoke            # CPU, seconds (CI's test)

One batch of the shipped real sets' spectra (256, beam size 20, the shipped checkpoint's guide
weight) is decoded by :func:`peptide_losses.train.decoding.beam_candidates` with the beam's stop
check off (``stop_check_every=None``: every step runs). Measured:

1. **Variants**, median of the repeats' wall clock of the whole beam (encode included): as
   shipped (float32), unguided, TF32 matmuls, bf16 autocast; each variant's candidates are
   compared with the shipped ones (same top token rows, largest log-probability difference).
2. **The profile** of one shipped beam: device time per kernel (top 15), total device time
   against the host's wall clock (a host far above its device is launch-bound: the cure is
   fewer launches, CUDA graphs or a fused step, not faster kernels).
3. **Host syncs**: whether the beam (its encode excepted) runs under
   ``torch.cuda.set_sync_debug_mode("error")``, else the line of this package that synchronised.

Writes ``results/<device>/beam_profile.{md,json}``; ``--smoke`` writes nowhere.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from peptide_losses.sequencing import DEFAULT_CHECKPOINT, load_sequencer
from peptide_losses.spectra import Preprocessing
from peptide_losses.train.decoding import beam_candidates

from ..environment import RESULTS_ROOT, describe, save_results, slug
from .throughput import real_spectra, sync_free, synchronize


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    guided: bool = True
    tf32: bool = False
    bf16: bool = False


VARIANTS = (Variant("as shipped (float32)"), Variant("unguided", guided=False), Variant("TF32 matmuls", tf32=True),
            Variant("bf16 autocast", bf16=True))


@contextlib.contextmanager
def settings(variant: Variant, device: torch.device):
    """``variant``'s numeric settings for the duration, restored after."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = variant.tf32
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if variant.bf16 else contextlib.nullcontext()
    try:
        with autocast:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@torch.no_grad()
def decode(sequencer, batch, beam_size: int, variant: Variant):
    guide = sequencer.config.decoding.guide_weight if variant.guided else None
    with settings(variant, sequencer.device):
        return beam_candidates(sequencer.model, batch, beam_size, guide, None)


def timed(sequencer, batch, beam_size: int, variant: Variant, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        synchronize(sequencer.device)
        start = time.perf_counter()
        decode(sequencer, batch, beam_size, variant)
        synchronize(sequencer.device)
        seconds.append(time.perf_counter() - start)
    return seconds


def agreement(reference, found) -> dict:
    """How far ``found``'s candidates are from ``reference``'s: share of identical top rows, largest
    log-probability difference where the top rows agree."""
    same = (reference.tokens[:, 0] == found.tokens[:, 0]).all(-1)
    diff = (reference.log_prob[:, 0] - found.log_prob[:, 0]).abs()[same]
    return {"same_top": float(same.float().mean()), "max_logp_diff": float(diff.max()) if diff.numel() else None}


def profile(sequencer, batch, beam_size: int, top: int) -> dict:
    """Device time per kernel of one shipped beam, and the host's wall clock around it."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if sequencer.device.type == "cuda" else [])
    synchronize(sequencer.device)
    start = time.perf_counter()
    with profiler(activities=activities) as prof:
        decode(sequencer, batch, beam_size, VARIANTS[0])
        synchronize(sequencer.device)
    wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.device_type.name == "CUDA"] if sequencer.device.type == "cuda" else []
    kernels = sorted(({"name": e.key[:90], "calls": e.count, "device_ms": e.self_device_time_total / 1e3}
                      for e in events), key=lambda row: -row["device_ms"])
    return {"host_wall_ms": wall * 1e3, "device_ms": sum(k["device_ms"] for k in kernels),
            "kernel_launches": sum(k["calls"] for k in kernels), "top": kernels[:top]}


def report(results: dict) -> str:
    env = results["environment"]
    lines = [f"# Where a beam step's time goes ({env['device']})", "",
             f"{env['date']}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, triton "
             f"{env['triton']}. One batch of {results['batch']} real spectra, beam size {results['beam']}, "
             f"{results['max_length']} steps (stop check off). Command: "
             f"`python -m benchmarks.sequencing.beam_profile --device {results['device']}`.", "",
             "| variant | beam ms (median) | ms per step | same top candidate | max log-prob diff |",
             "|---|---:|---:|---:|---:|"]
    for row in results["variants"]:
        diff = "-" if row["max_logp_diff"] is None else f"{row['max_logp_diff']:.2e}"
        lines.append(f"| {row['name']} | {row['median_ms']:.1f} | {row['median_ms'] / results['max_length']:.2f} | "
                     f"{row['same_top']:.3f} | {diff} |")
    p = results["profile"]
    lines += ["", f"Profile of one shipped beam: host wall clock {p['host_wall_ms']:.1f} ms, device busy "
              f"{p['device_ms']:.1f} ms, {p['kernel_launches']:,} kernel launches. Beam free of host syncs (64 "
              f"spectra, its encode excepted): {results['sync_free']}.", "", "| kernel | calls | device ms |", "|---|---:|---:|"]
    lines += [f"| `{k['name']}` | {k['calls']} | {k['device_ms']:.2f} |" for k in p["top"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--beam", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="CPU, 4 spectra, beam 2, one repeat; writes nowhere")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.batch, args.beam, args.repeats = "cpu", 4, 2, 1
    device = torch.device(args.device)
    sequencer = load_sequencer(args.checkpoint, device)
    spectra = real_spectra(args.batch, sequencer.vocabulary, Preprocessing())
    batch = sequencer.batch(spectra)
    results = {"environment": describe(device), "device": args.device, "batch": args.batch, "beam": args.beam,
               "max_length": sequencer.max_length, "variants": []}
    # The reference candidates; the run also compiles the kernels and grows the allocator.
    shipped = decode(sequencer, batch, args.beam, VARIANTS[0])
    for variant in VARIANTS:
        # Each variant's untimed first run (under its own settings) gives the candidates compared.
        found = decode(sequencer, batch, args.beam, variant)
        seconds = timed(sequencer, batch, args.beam, variant, args.repeats)
        row = {"name": variant.name, "median_ms": statistics.median(seconds) * 1e3, "ms": [s * 1e3 for s in seconds],
               **agreement(shipped, found)}
        results["variants"].append(row)
        print(f"{variant.name}: {row['median_ms']:.1f} ms", flush=True)
    results["profile"] = profile(sequencer, batch, args.beam, 15)
    results["sync_free"] = sync_free(sequencer, spectra, args.beam)
    if args.smoke:
        return report(results)
    folder = Path(args.results) / ("cpu" if device.type == "cpu" else slug(results["environment"]["device"]))
    return str(save_results(folder, "beam_profile", results, report(results)))


if __name__ == "__main__":
    print(main())
