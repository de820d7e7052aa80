"""Spectra per second of `peptide-losses sequence`, and where the time goes (issue 36).

    python -m benchmarks.sequencing.throughput --device cuda            # one GPU, 10,000 spectra
    python -m benchmarks.sequencing.throughput --smoke                  # CPU, seconds (CI's test)

The spectra are the shipped real sets (Casanovo sample, both MassIVE-KB halves: 628 spectra)
repeated to ``--spectra``. Two measurements per checkpoint:

1. **Stages** of the decode, batch by batch, each bounded by a device synchronisation:
   ``input`` (collate, copy to the device), ``encode`` (the model's encoder), ``beam`` (the
   beam's decoder steps and guide, given the encoder's output), ``scoring``
   (precursor ppm and spectrum scores of every candidate) and ``judge`` (the 20 features and the
   logistic regression), at each beam size K, batch size and ``stop_check_every`` (how often the
   beam asks the device whether every candidate has stopped: a host sync; None never asks).
   Peak GPU memory per row. A sync-free row also runs the beam under
   ``torch.cuda.set_sync_debug_mode("error")``: it says whether any step waits for the host.
2. **The command** as a user runs it (``peptide-losses sequence FILE.mgf -o out.mztab``: model
   load, reading the MGF, decoding, writing mzTab) at its defaults and at the fastest settings
   of (1), wall clock, each timed three ways (:data:`RUNS`): in this process after an untimed run
   of the same command (the speed of the command's own work), and at the defaults in a new
   process as a user starts it, first with an empty Triton cache (a machine's first run: every
   kernel compiles) and then with the cache that run filled (every later run). Timed once in this
   process without that warm-up, the command took 14.2-16.6 s on H100s where a warm one had taken
   9.4 s (2026-12-05, different hosts): compilation, the hosts, or both; these rows tell them apart.

Writes ``results/<device>/throughput.{md,json}``; ``--command-only`` measures (2) at the defaults
alone (a minute on a GPU) into ``throughput_command.{md,json}``; ``--smoke`` writes nowhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from peptide_losses.datasets import REAL_SETS, real_set
from peptide_losses.sequencing import DEFAULT_CHECKPOINT, load_sequencer
from peptide_losses.spectra import Preprocessing
from peptide_losses.train.decoding import beam_candidates, candidate_evidence

from ..environment import RESULTS_ROOT, describe, save_results, slug
from .real_sets import run

STAGES = ("input", "encode", "beam", "scoring", "judge")


def real_spectra(count: int, vocabulary, preprocessing: Preprocessing | None = None) -> list:
    """``count`` spectra: the shipped real sets' (without annotations) repeated in order, as read
    (``preprocessing`` None) or preprocessed as ``sequence`` does."""
    pool = [dataclasses.replace(item.spectrum, tokens=None, sequence=None)
            for name in REAL_SETS for item in real_set(name, vocabulary, preprocessing)]
    return [pool[i % len(pool)] for i in range(count)]


def write_mgf(spectra: list, path: Path) -> None:
    """The spectra as an MGF (as read: the command preprocesses them itself)."""
    with open(path, "w", encoding="ascii") as handle:
        for i, s in enumerate(spectra):
            handle.write(f"BEGIN IONS\nTITLE=spectrum {i}\nPEPMASS={s.precursor_mz!r}\nCHARGE={s.charge}+\n")
            handle.writelines(f"{mz!r} {intensity!r}\n" for mz, intensity in zip(s.mz.tolist(), s.intensity.tolist()))
            handle.write("END IONS\n")


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (nothing to wait for on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """Seconds of each stage, each bounded by a synchronisation of ``device``."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.seconds = device, {stage: 0.0 for stage in STAGES}

    def time(self, stage: str, function, *args, **kwargs):
        synchronize(self.device)
        start = time.perf_counter()
        out = function(*args, **kwargs)
        synchronize(self.device)
        self.seconds[stage] += time.perf_counter() - start
        return out


@torch.no_grad()
def stages(sequencer, spectra: list, beam_size: int, batch_size: int) -> dict:
    """One pass over ``spectra`` timing each stage (:data:`STAGES`); the beam's time excludes its encode."""
    clock = Clock(sequencer.device)
    model, settings = sequencer.model, sequencer.config.decoding
    if sequencer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(sequencer.device)
    for start in range(0, len(spectra), batch_size):
        batch = clock.time("input", sequencer.batch, spectra[start:start + batch_size])
        encoded = clock.time("encode", model.encode, batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz,
                             batch.charge)
        found = clock.time("beam", beam_candidates, model, batch, beam_size, settings.guide_weight,
                           sequencer.stop_check_interval(batch), encoded)
        ppm, scores = clock.time("scoring", candidate_evidence, found.tokens, batch, settings,
                                 sequencer.config.losses.precursor.isotope_errors, sequencer.backend)
        if sequencer.judge is not None:
            from peptide_losses.features import Beam

            beam = Beam(found.tokens, found.log_prob, found.finished, ppm, scores)
            clock.time("judge", lambda: sequencer.judge.probability(sequencer.features(batch, beam), beam.finished))
    seconds = dict(clock.seconds)
    total = sum(seconds.values())
    peak = torch.cuda.max_memory_allocated(sequencer.device) / 2**30 if sequencer.device.type == "cuda" else None
    return {"seconds": seconds, "total_s": total, "spectra_per_s": len(spectra) / total, "peak_gib": peak,
            "scoring_and_judge_share": (seconds["scoring"] + seconds["judge"]) / total}


@torch.no_grad()
def sync_free(sequencer, spectra: list, beam_size: int) -> str:
    """"yes" if one beam of the first 64 spectra with ``stop_check_every=None`` (its encode excepted) runs
    under sync debug mode "error", else "no: " and the line of this package that synchronised."""
    if sequencer.device.type != "cuda":
        return "not measured (CPU)"
    batch = sequencer.batch(spectra[:64])
    model = sequencer.model
    encoded = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        beam_candidates(model, batch, beam_size, sequencer.config.decoding.guide_weight, None, encoded)
        return "yes"
    except RuntimeError as error:
        frames = [f for f in traceback.extract_tb(error.__traceback__) if "peptide_losses" in f.filename]
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno} `{frames[-1].line}`" if frames else "unknown"
        return f"no: {where}: {str(error).splitlines()[0]}"
    finally:
        torch.cuda.set_sync_debug_mode("default")


#: How the whole command is timed (the module's docstring says why each).
RUNS = ("this process, warm", "new process, empty Triton cache", "new process, Triton cache filled")


def command(mgf: Path, checkpoint: str, device: str, backend: str, options: list[str], folder: Path,
            how: str) -> float:
    """Wall-clock seconds of ``peptide-losses sequence`` on the MGF (all of it: load, read, decode, write),
    timed as ``how`` says (one of :data:`RUNS`); a new process reads and fills Triton's cache in
    ``folder``/triton."""
    argv = ["sequence", str(mgf), "-o", str(folder / "out.mztab"), "--checkpoint", checkpoint, "--device", device,
            "--backend", backend, "--no-progress", *options]
    if how == RUNS[0]:
        run(argv)  # untimed: the kernels compile for this command's batch shapes
        start = time.perf_counter()
        summary = run(argv)
    else:
        env = {**os.environ, "TRITON_CACHE_DIR": str(folder / "triton")}
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "peptide_losses", *argv], env=env, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"peptide-losses {' '.join(argv)} failed: {done.stderr}")
        summary = done.stderr
    seconds = time.perf_counter() - start
    print(f"{how}: {summary.strip().splitlines()[-1]}", flush=True)
    return seconds


def variants(smoke: bool, device: torch.device) -> list[dict]:
    """(beam size, batch size, stop_check_every) rows of the stage measurement."""
    if smoke:
        return [{"beam": 2, "batch": 8, "check": 1}, {"beam": 2, "batch": 8, "check": None}]
    rows = [{"beam": k, "batch": 256, "check": check} for k in (5, 20, 40) for check in (1, 8, None)]
    rows += [{"beam": 20, "batch": b, "check": None} for b in (64, 1024)]
    return rows if device.type == "cuda" else rows[:3]


def report(results: dict) -> str:
    env = results["environment"]
    lines = [f"# `peptide-losses sequence` throughput ({env['device']})", "",
             f"{env['date']}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, triton "
             f"{env['triton']}. {results['spectra']} spectra (the shipped real sets repeated). Command: "
             f"`python -m benchmarks.sequencing.throughput --device {results['device']}"
             f"{' --command-only' if results.get('command_only') else ''}`.", ""]
    for name, entry in results["checkpoints"].items():
        lines += [f"## {name} (max_length {entry['max_length']}, judge: {entry['judge']})", ""]
        if entry["stages"]:
            lines += [f"Sync-free beam (`stop_check_every=None` under `set_sync_debug_mode('error')`): "
                      f"{entry['sync_free']}.", "", "| K | batch | stop check every | spectra/s | input | encode | "
                      "beam steps | scoring | judge | scoring+judge share | peak GiB |",
                      "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in entry["stages"]:
            s, m = row["seconds"], row["measured"]
            peak = "" if m["peak_gib"] is None else f"{m['peak_gib']:.2f}"
            lines.append(f"| {row['beam']} | {row['batch']} | {row['check']} | {m['spectra_per_s']:,.0f} | "
                         + " | ".join(f"{s[stage]:.2f}" for stage in STAGES)
                         + f" | {m['scoring_and_judge_share']:.2f} | {peak} |")
        if entry["stages"]:
            lines += ["", "Seconds per stage are totals over all spectra (medians of the repeats' totals: "
                      f"{results['repeats']} repeats)."]
        lines += ["", "The whole command, wall clock:", "", "| options | timed | seconds | spectra/s |",
                  "|---|---|---:|---:|"]
        for row in entry["command"]:
            lines.append(f"| `{' '.join(row['options']) or '(defaults)'}` | {row.get('how', RUNS[0])} | "
                         f"{row['seconds']:.1f} | {results['spectra'] / row['seconds']:,.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> Path | str:
    """The written report's path; with ``--smoke`` the report itself (nothing written)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--spectra", type=int, default=10_000)
    p.add_argument("--checkpoint", action="append", help="checkpoint(s) to measure (default: the shipped one)")
    p.add_argument("--repeats", type=int, default=3, help="passes per stage row; the median pass is reported")
    p.add_argument("--backend", default="auto", help="of the spectrum scores (auto, triton, reference)")
    p.add_argument("--command-only", action="store_true", help="only the whole command, at its defaults")
    p.add_argument("--smoke", action="store_true",
                   help="CPU, 16 spectra, two tiny rows, the reference backend; returns the report, writes nothing")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.spectra, args.repeats, args.backend = "cpu", 16, 1, "reference"
    device = torch.device(args.device)
    results = {"environment": describe(device), "device": args.device, "command_only": args.command_only,
               "spectra": args.spectra,
               "repeats": args.repeats, "checkpoints": {}}
    folder = Path(args.results) / ("cpu" if device.type == "cpu" else slug(results["environment"]["device"]))

    def save() -> Path | str:
        # After every row: a run stopped at its time limit keeps what it measured.
        stem = "throughput_command" if args.command_only else "throughput"
        return report(results) if args.smoke else save_results(folder, stem, results, report(results))

    for checkpoint in args.checkpoint or [str(DEFAULT_CHECKPOINT)]:
        sequencer = dataclasses.replace(load_sequencer(checkpoint, device), backend=args.backend)
        spectra = real_spectra(args.spectra, sequencer.vocabulary, Preprocessing())
        # Warm-up: the kernels' compilation and the allocator's first blocks are not throughput.
        stages(sequencer, spectra[:64], 2, 64)
        entry = results["checkpoints"][Path(checkpoint).name] = {
            "max_length": sequencer.max_length, "judge": sequencer.judge is not None,
            "sync_free": "not measured" if args.command_only else sync_free(sequencer, spectra, 2), "stages": [],
            "command": []}
        for row in [] if args.command_only else variants(args.smoke, device):
            tuned = dataclasses.replace(sequencer, stop_check_every=row["check"])
            passes = sorted((stages(tuned, spectra, row["beam"], row["batch"]) for _ in range(args.repeats)),
                            key=lambda m: m["total_s"])
            median = passes[len(passes) // 2]
            entry["stages"].append({**row, "seconds": median["seconds"], "measured": median,
                                    "totals": [m["total_s"] for m in passes]})
            print(f"{Path(checkpoint).name} K={row['beam']} B={row['batch']} check={row['check']}: "
                  f"{median['spectra_per_s']:,.0f} spectra/s; seconds "
                  + ", ".join(f"{stage} {value:.2f}" for stage, value in median["seconds"].items()), flush=True)
            save()
        with tempfile.TemporaryDirectory() as tmp:
            mgf = Path(tmp) / "spectra.mgf"
            write_mgf(real_spectra(args.spectra, sequencer.vocabulary), mgf)
            # The command at its defaults, and at the fastest batch size of the default beam size.
            default_beam = [r for r in entry["stages"] if r["beam"] == sequencer.config.decoding.beam_size]
            fastest = max(default_beam or entry["stages"], key=lambda r: r["measured"]["spectra_per_s"], default=None)
            timings = [([], how) for how in RUNS] + ([(["--batch-size", str(fastest["batch"])], RUNS[0])]
                                                     if fastest else [])
            for options, how in timings:
                entry["command"].append({"options": options, "how": how,
                                         "seconds": command(mgf, checkpoint, args.device, args.backend, options,
                                                            Path(tmp), how)})
                save()
    return save()

if __name__ == "__main__":
    print(main())
