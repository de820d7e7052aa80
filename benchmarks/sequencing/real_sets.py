"""Peptide recall and precision-coverage of `peptide-losses sequence` on the shipped real sets, per
decoding, measured exactly as a user runs it: the command line writes mzTab, `evaluate` reads it.

    python -m benchmarks.sequencing.real_sets                      # CPU, ~5 minutes on 2 cores
    python -m benchmarks.sequencing.real_sets --device cuda        # one GPU

For each set (the Casanovo sample and the MassIVE-KB test half; never the calibration half) and
each decoding (greedy, the precursor beam, the spectrum-guided beam with spectrum rerank, and
the same beam chosen by the shipped judges, fitted on the calibration half: without ms2pip, and
with ms2pip's predicted intensities where ms2pip is installed), the shipped checkpoint sequences every spectrum (top 1 PSM) and `evaluate` scores the
file. Seconds are the whole command (model load, reading, decoding, writing), divided into
seconds per 1,000 spectra. Writes ``results/<device>/sequencing.{md,json}``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import torch

from peptide_losses import Vocabulary
from peptide_losses.cli import main as cli
from peptide_losses.datasets import REPORTED_SETS, real_set
from peptide_losses.judge import judge_path
from peptide_losses.predicted_intensity import available as ms2pip_available
from peptide_losses.sequencing import DEFAULT_CHECKPOINT, load_sequencer

from ..environment import RESULTS_ROOT, describe, slug

def variants() -> dict[str, list[str]]:
    """The decodings measured, as ``sequence`` options: the judge-free ones, the shipped judge, the one
    that also reads the package's intensity model, and (where ms2pip is installed) the one that reads
    ms2pip's (``benchmarks.sequencing.judge`` fits all three)."""
    out = {name: ["--decoding", name] for name in ("greedy", "precursor-beam", "default")}
    out["judge"] = ["--decoding", "judge", "--judge", str(judge_path(DEFAULT_CHECKPOINT))]
    out["judge + own intensity model"] = ["--decoding", "judge", "--judge",
                                          str(RESULTS_ROOT / "cpu" / "judge-model.json")]
    if ms2pip_available():
        out["judge + ms2pip"] = ["--decoding", "judge", "--judge", str(RESULTS_ROOT / "cpu" / "judge-ms2pip.json")]
    return out


def run(argv: list) -> str:
    """One ``peptide-losses`` command (arguments as strings or paths); its stderr; a failure raises with it."""
    argv = [str(a) for a in argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli(argv)
    if code != 0:
        raise RuntimeError(f"peptide-losses {' '.join(argv)} failed: {err.getvalue()}")
    return err.getvalue()


def measure(name: str, decoding: str, options: list[str], device: str, beam_size: int | None, folder: Path) -> dict:
    stem = f"{name}-{decoding}".replace(" ", "")
    psms, metrics = folder / f"{stem}.mztab", folder / f"{stem}.json"
    options = options + (["--beam-size", str(beam_size)] if beam_size else [])
    start = time.perf_counter()
    summary = run(["sequence", name, "-o", str(psms), "--device", device, "--no-progress", *options])
    seconds = time.perf_counter() - start
    run(["evaluate", str(psms), name, "--json", str(metrics)])
    result = json.loads(metrics.read_text())
    return {"set": name, "decoding": decoding, "seconds": seconds, "summary": summary.strip(),
            **{k: result[k] for k in ("spectra", "psms", "peptide_recall", "aa_precision", "aa_recall", "auc")}}


def too_long(max_length: int) -> dict[str, int]:
    """Per reported set, the spectra whose true peptide has more tokens than the model can write."""
    vocabulary = Vocabulary.default()
    return {name: sum(len(s.tokens) > max_length for _, s in real_set(name, vocabulary)) for name in REPORTED_SETS}


def report(rows: list[dict], environment: dict, beam: int, max_length: int) -> str:
    long = ", ".join(f"{name} {count}" for name, count in too_long(max_length).items())
    lines = [f"# `peptide-losses sequence` on the shipped real sets ({environment['device']})", "",
             f"{environment['date']}; torch {environment['torch']}, triton {environment['triton']}; the shipped "
             f"checkpoint (`peptide_losses/checkpoints/gpu_preset.pt`), beams of {beam}; every spectrum of each set, "
             f"top 1 PSM. Peptides longer than the model's {max_length} tokens, which it cannot write: {long}. "
             "Command: `python -m benchmarks.sequencing.real_sets`.", "",
             "| set | decoding | spectra | with a PSM | peptide recall | aa precision | aa recall | "
             "precision-coverage AUC | s per 1,000 spectra |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['decoding']} | {r['spectra']} | {r['psms']} | {r['peptide_recall']:.3f} | "
                     f"{r['aa_precision']:.3f} | {r['aa_recall']:.3f} | {r['auc']:.3f} | "
                     f"{1000 * r['seconds'] / r['spectra']:.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--beam-size", type=int, help="beam of the two beam decodings (default: the checkpoint's, 20)")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    environment = describe(device)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in REPORTED_SETS:
            for decoding, options in variants().items():
                rows.append(measure(name, decoding, options, args.device, args.beam_size, Path(folder)))
                print(f"{name} {decoding}: recall {rows[-1]['peptide_recall']:.3f} in {rows[-1]['seconds']:.1f} s")
    out = Path(args.results) / ("cpu" if device.type == "cpu" else slug(environment["device"]))
    out.mkdir(parents=True, exist_ok=True)
    (out / "sequencing.json").write_text(json.dumps({"environment": environment, "rows": rows}, indent=1) + "\n")
    config = load_sequencer().config
    (out / "sequencing.md").write_text(report(rows, environment, args.beam_size or config.decoding.beam_size,
                                              config.max_length))
    return out / "sequencing.md"


if __name__ == "__main__":
    print(main())
