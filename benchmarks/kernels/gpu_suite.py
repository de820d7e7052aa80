"""Every kernel comparison on one GPU, in parallel pytest shards, and a record of the run.

    python -m benchmarks.kernels.gpu_suite [--workers N] [--profile ci|thorough] [--out DIR]

Runs FILES on CUDA: the hypothesis comparisons (a third of the CPU's examples,
``helpers.examples``), the near-match, tie, division-rule and gradcheck tests,
and the realistic sizes (marker ``gpu``). Most of the time goes to compiling
kernel variants (each hypothesis example specialises the kernels anew, ~1-3 s
of one CPU core each), so N pytest processes share the GPU, each running the
shard ``conftest.py --shard`` gives it (balanced by hypothesis examples).

Writes ``DIR/<device>/gpu_suite.md`` (default ``benchmarks/results``, beside the
benchmarks' results): device, driver, versions, date, the command, counts, wall
time and the slowest tests.
Exit status 1 if a test failed, errored or was skipped (nothing may skip on a
GPU), or if the run took longer than BUDGET_S.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from ..environment import RESULTS_ROOT, describe, slug

ROOT = RESULTS_ROOT.parents[1]

FILES = ("tests/test_spectrum_kernel.py", "tests/test_precursor_kernel.py", "tests/test_kernel_parts.py",
         "tests/test_features_kernel.py")
#: Wall time allowed on one H200: short enough to run every kernel comparison after each kernel change.
BUDGET_S = 300


def outcomes(report: Path) -> list[tuple[str, str, float]]:
    """(test id, outcome, seconds) of every test case in a junit XML report (one error if there is none)."""
    if not report.is_file():
        return [(f"{report.stem}: no report (the shard crashed)", "error", 0.0)]
    rows = []
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case} & {"failure", "error", "skipped"}
        outcome = kinds.pop() if kinds else "passed"
        rows.append((f"{case.get('classname')}::{case.get('name')}", outcome, float(case.get("time", 0))))
    return rows


def run_shards(workers: int, profile: str, folder: Path) -> tuple[list[int], float]:
    """Start every shard, wait for all; their exit codes and the wall time."""
    start = time.perf_counter()
    processes = []
    for index in range(workers):
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--shard={index}/{workers}",
                   f"--hypothesis-profile={profile}", f"--junitxml={folder / f'shard{index}.xml'}", *FILES]
        log = open(folder / f"shard{index}.log", "w")
        processes.append((subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), log))
    codes = []
    for process, log in processes:
        codes.append(process.wait())
        log.close()
    return codes, time.perf_counter() - start


def record(env: dict, command: str, rows: list, codes: list[int], wall: float) -> str:
    counts = {kind: sum(1 for _, outcome, _ in rows if outcome == kind)
              for kind in ("passed", "failure", "error", "skipped")}
    slowest = sorted(rows, key=lambda row: -row[2])[:10]
    lines = [
        f"# GPU kernel suite: {env['device']}",
        "",
        f"{env['date']}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, triton {env['triton']}.",
        "",
        f"Command: `{command}`",
        "",
        f"**{counts['passed']} passed, {counts['failure']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped in {wall:.0f} s** (wall, {len(codes)} shards; budget {BUDGET_S} s); "
        f"shard exit codes {codes}.",
        "",
        "Slowest tests (s, within their shard):",
        "",
        *(f"- {seconds:.1f} {name} ({outcome})" for name, outcome, seconds in slowest),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)),
                        help="pytest processes sharing the GPU (default: half the CPU cores, at most 8)")
    parser.add_argument("--profile", default="ci", choices=("ci", "thorough"), help="hypothesis profile")
    parser.add_argument("--out", type=Path, default=RESULTS_ROOT, help="results root: the record goes to OUT/<device>/")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("the GPU suite needs CUDA; on the CPU run: python -m pytest -q tests", file=sys.stderr)
        return 2
    env = describe(torch.device("cuda"))
    command = "python -m benchmarks.kernels.gpu_suite " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        codes, wall = run_shards(args.workers, args.profile, folder)
        rows = [row for index in range(args.workers) for row in outcomes(folder / f"shard{index}.xml")]
        for index, code in enumerate(codes):
            if code != 0:
                print(f"---- shard {index} (exit {code}), end of its log:")
                print((folder / f"shard{index}.log").read_text()[-6000:])
    text = record(env, command.strip(), rows, codes, wall)
    path = args.out / slug(env["device"]) / "gpu_suite.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {path}")
    bad = any(outcome != "passed" for _, outcome, _ in rows) or any(codes) or not rows
    return 1 if bad or wall > BUDGET_S else 0


if __name__ == "__main__":
    sys.exit(main())
