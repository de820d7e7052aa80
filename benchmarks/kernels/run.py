"""Benchmark entry point: ``python -m benchmarks.kernels.run --grid headline``.

Measures every (case, implementation) of the chosen grid in forward, backward
and forward+backward, writes ``<--out>/<device>/results.csv`` (default
``benchmarks/results`` on a GPU, the git-ignored ``runs/benchmarks`` on the CPU) after
each measurement, then ``results.md`` and the PNG plots. See benchmarks/kernels/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..environment import RESULTS_ROOT, describe, device_name, slug
from . import end_to_end, grid, implementations, report
from .measure import case_fields, failure_status, input_sets, measure, release_memory
from .plots import write_plots
from .roofline import measure_rates
from .timing import L2Flush, host_floor_ms, settings_for

#: CPU runs are smoke tests, not records: their default root is ignored by git (.gitignore: runs/).
CPU_RESULTS_ROOT = RESULTS_ROOT.parents[1] / "runs" / "benchmarks"
CPU_IMPLS = ("eager", "triton", "keops")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.kernels.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", choices=grid.GRIDS, default=None,
                        help="headline (goal points + end-to-end), sweep (one factor at a time: the plots), "
                             "full (cross product, hours), smoke (tiny, for a CPU). Default: headline, smoke on CPU")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--loss", nargs="+", default=list(grid.LOSSES), choices=grid.LOSSES)
    parser.add_argument("--impl", nargs="+", default=None, choices=implementations.IMPLEMENTATIONS,
                        help=f"default: all on CUDA, {' '.join(CPU_IMPLS)} on CPU")
    parser.add_argument("--dtype", nargs="+", default=list(grid.DTYPES), choices=list(grid.DTYPES))
    parser.add_argument("--max-batch", type=int, default=None, help="leave out cases with a larger B")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="start no new measurement after this many seconds (a compile can run ~1 min past it)")
    parser.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=None,
                        help="also time one training step of the slim trainer (default: on for the headline grid)")
    parser.add_argument("--train-batch", type=int, default=None,
                        help=f"batch size of the end-to-end step (default {end_to_end.BATCH_SIZE}, 8 on CPU)")
    parser.add_argument("--resume", action="store_true", help="skip measurements already in results.csv")
    parser.add_argument("--out", "--results", dest="results", type=Path, default=None,
                        help="root folder; results go to <root>/<device-name>/ (default benchmarks/results on a "
                             "GPU, runs/benchmarks on the CPU)")
    parser.add_argument("--copy-to", type=Path, default=None,
                        help="at the end, copy the results folder into this one (e.g. the device tool's $OUT)")
    args = parser.parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.grid = args.grid or ("smoke" if args.device.type == "cpu" else "headline")
    args.results = args.results or (CPU_RESULTS_ROOT if args.device.type == "cpu" else RESULTS_ROOT)
    args.impl = args.impl or (list(implementations.IMPLEMENTATIONS) if args.device.type == "cuda" else list(CPU_IMPLS))
    args.train_batch = args.train_batch or (end_to_end.BATCH_SIZE if args.device.type == "cuda" else 8)
    if args.end_to_end is None:
        args.end_to_end = args.grid == "headline"
    return args


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a time limit's kill): stop measuring, still write what we have.

    A KeyboardInterrupt, so that the per-measurement ``except Exception`` does
    not record it as a failure and go on."""


def _raise_interrupted(signum, frame):
    raise Interrupted()


def plan(args) -> list[tuple[grid.Case, list[str]]]:
    """(case, implementations to run) in order, without what ``--resume`` finds done."""
    cases = grid.select(grid.grid_cases(args.grid), losses=args.loss, dtypes=args.dtype, max_batch=args.max_batch)
    done = set()
    if args.resume:
        done = {report.row_key(r) for r in report.read_csv(results_folder(args) / "results.csv")}
    tasks = []
    for case in cases:
        impls = [
            impl for impl in args.impl
            if implementations.applies(impl, case)
            and not all(_key(case, impl, mode) in done for mode in implementations.modes(impl, args.device))
        ]
        if impls:
            tasks.append((case, impls))
    return tasks


def _key(case: grid.Case, impl: str, mode: str) -> tuple[str, ...]:
    return report.row_key({**case_fields(case), "impl": impl, "mode": mode})


def results_folder(args) -> Path:
    return args.results / slug(device_name(args.device))


def _fma_rate(per_s: float) -> str:
    """T FMA/s on a GPU, G FMA/s on a CPU (where "0.0 T" would say nothing)."""
    return f"{per_s / 1e12:.1f} T FMA/s" if per_s >= 1e12 else f"{per_s / 1e9:.1f} G FMA/s"


class Session:
    """One run: the measured rates, the rows so far (rewritten to the CSV after each task), the budget."""

    def __init__(self, args):
        self.args = args
        self.started = time.monotonic()
        self.folder = results_folder(args)
        self.rows = report.read_csv(self.folder / "results.csv")
        self.notes: list[str] = []
        print(f"measuring {args.device} rates (HBM copy, fp32 FMA)...", file=sys.stderr)
        self.rates = measure_rates(args.device)
        self.settings = settings_for(args.device)
        self.shared = {**describe(args.device), "copy_gbps": self.rates.copy_bytes_per_s / 1e9,
                       "fp32_tfma": self.rates.fp32_ops_per_s / 1e12, "fp32_method": self.rates.fp32_method,
                       "host_floor_ms": host_floor_ms(args.device, self.settings)}
        print(f"{self.shared['device']}: copy {self.shared['copy_gbps']:.0f} GB/s, "
              f"fp32 {_fma_rate(self.rates.fp32_ops_per_s)} ({self.rates.fp32_method}), "
              f"host floor {self.shared['host_floor_ms']:.3f} ms", file=sys.stderr)
        self.flush = L2Flush(args.device)

    def record(self, new_rows: list[dict]) -> None:
        self.rows = report.merge(self.rows, [{**r, **self.shared} for r in new_rows])
        report.write_csv(self.folder / "results.csv", self.rows)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self) -> bool:
        return self.args.max_seconds is not None and self.elapsed() > self.args.max_seconds

    def run_case(self, case: grid.Case, impls: list[str], progress) -> None:
        """Every implementation on one case, sharing one set of inputs."""
        try:
            sets = input_sets(case, self.args.device)
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory for the inputs alone
            status = f"{failure_status(exc)} (building the inputs)"
            self.record([{**case_fields(case), "impl": i, "mode": m, "status": status}
                         for i in impls for m in implementations.modes(i, self.args.device)])
            progress(len(impls), f"{case.label()}: {status}")
            return
        for impl in impls:
            if self.over_budget():
                break
            new = measure(impl, case, sets, self.rates, self.settings, self.flush)
            self.record(new)
            progress(1, _summary(impl, case, new))
        del sets
        release_memory(self.args.device)

    def _has_train_step(self) -> bool:
        return any(r["loss"] == report.TRAIN_STEP for r in self.rows)

    def run(self, tasks: list[tuple[grid.Case, list[str]]]) -> None:
        total = sum(len(impls) for _, impls in tasks)
        done = 0
        # Without a terminal (the device tool's log) the numbered per-task lines are the progress.
        bar = tqdm(total=total, unit="task", file=sys.stderr, disable=not sys.stderr.isatty())

        def progress(count: int, line: str) -> None:
            nonlocal done
            done += count
            tqdm.write(f"[{done}/{total} {self.elapsed():5.0f}s] {line}", file=sys.stderr)
            bar.update(count)

        try:
            for case, impls in tasks:
                if self.over_budget():
                    break
                self.run_case(case, impls, progress)
            if self.args.end_to_end and not (self.args.resume and self._has_train_step()):
                if self.over_budget():
                    self.notes.append("the end-to-end training step was not run: time budget spent")
                else:
                    self.record(end_to_end.measure_train_step(self.args.device, self.settings, self.flush,
                                                              self.args.train_batch))
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as Interrupted
            self.notes.append("interrupted: the results hold what was measured before the interruption")
        finally:
            bar.close()
        if done < total:
            self.notes.append(f"stopped after {self.elapsed():.0f} s: {total - done} of {total} measurements "
                              "not run; rerun the same command with --resume to continue")


@contextlib.contextmanager
def interpreter_if_cpu(device: torch.device):
    """``TRITON_INTERPRET=1`` (unless set) while measuring on the CPU, restored after:
    Triton kernels on CPU tensors need the interpreter, and a caller in a GPU
    process (the tests) must get compiled kernels back."""
    if device.type != "cpu" or "TRITON_INTERPRET" in os.environ:
        yield
        return
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        yield
    finally:
        del os.environ["TRITON_INTERPRET"]


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    try:
        with interpreter_if_cpu(args.device):
            session = Session(args)
            session.run(plan(args))
    finally:
        signal.signal(signal.SIGTERM, previous)
    finish(session.folder, session.notes, grid.grid_centers(args.grid))
    if args.copy_to is not None:
        shutil.copytree(session.folder, args.copy_to / session.folder.name, dirs_exist_ok=True)
    return session.folder


def _summary(impl: str, case: grid.Case, rows: list[dict]) -> str:
    """One line per task: fwd+bwd time and memory, or the status."""
    parts = []
    for row in rows:
        if row["status"] != "ok":
            parts.append(f"{row['mode']}: {row['status']}")
            break
        mib = row.get("peak_extra_mib")
        parts.append(f"{row['mode']} {row['ms']:.4g} ms" + (f" {mib:.4g} MiB" if mib != "" else ""))
    return f"{impl:8s} {case.label():52s} " + "; ".join(parts)


def finish(folder: Path, notes: list[str], centers: dict) -> None:
    """Markdown and plots from the CSV's rows (all strings, as on disk), goals printed."""
    rows = report.read_csv(folder / "results.csv")
    plots = write_plots(rows, centers, folder)
    report.write_markdown(folder / "results.md", rows, notes, plots)
    print("\n".join(report.goal_lines(rows)))
    for note in notes:
        print(note)
    print(f"results: {folder}")


if __name__ == "__main__":
    main()
