"""Results on disk: the CSV (one row per loss x implementation x mode x case) and the Markdown report.

Runs add to the CSV rather than replace it: a row is identified by :data:`KEY`,
and a new measurement of the same key replaces the old one, so a grid can be
measured over several calls (``--resume`` skips what is already there).
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from . import goals
from .goals import number
from .implementations import GRAPH_MODE, IMPLEMENTATIONS

KEY = ("loss", "impl", "mode", "B", "L", "N", "V", "ions", "charges", "dtype")
COLUMNS = (
    *KEY, "M", "status", "ms", "ms_p20", "ms_p80", "iters", "peak_extra_mib", "loss_value",
    "floor_bytes", "floor_ops", "floor_ms", "vs_floor", "copy_gbps", "fp32_tfma", "fp32_method",
    "host_floor_ms", "device", "driver", "cuda", "torch", "triton", "date",
)
ENVIRONMENT = ("device", "driver", "cuda", "torch", "triton", "date", "copy_gbps", "fp32_tfma", "fp32_method",
               "host_floor_ms")
MODE_ORDER = ("fwd+bwd", GRAPH_MODE, "forward", "backward")
#: The loss column of end-to-end training-step rows.
TRAIN_STEP = "train_step"
TITLES = {"spectrum": "Spectrum matching loss", "precursor": "Precursor mass loss"}


def row_key(row: dict) -> tuple[str, ...]:
    return tuple(str(row.get(k, "")) for k in KEY)


def read_csv(path: Path) -> list[dict]:
    """Rows of an existing results CSV (all values strings); [] if there is none."""
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with rows of the same :data:`KEY` replaced by ``new``'s, new keys appended."""
    fresh = {row_key(r): r for r in new}
    kept = [r for r in old if row_key(r) not in fresh]
    return kept + list(fresh.values())


def write_csv(path: Path, rows: list[dict]) -> None:
    """All rows, :data:`COLUMNS` in order (missing values empty); written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore", restval="")
        writer.writeheader()
        writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
    partial.replace(path)


def _csv_value(value):
    return f"{value:.6g}" if isinstance(value, float) else value


def short(value: float | None) -> str:
    """3 significant digits, without exponent notation for values up to 1e5."""
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def status_code(status: str) -> str:
    """A table cell for a row that has no number."""
    if status.startswith("skipped: out of memory"):
        return "OOM"
    for prefix, code in (("skipped", "skip"), ("not run", "n/a"), ("failed", "fail")):
        if status.startswith(prefix):
            return code
    return "?"


def _case_sort_key(row: dict):
    n = int(row["N"]) if row.get("N") else 0
    return (row["dtype"] != "fp32", int(row["B"]), int(row["L"]), n, len(row["ions"]), row["charges"])


def _cell(row: dict | None, column: str) -> str:
    if row is None:
        return ""
    if row["status"] != "ok":
        return status_code(row["status"])
    return short(number(row, column))


def _ratio(numerator: dict | None, denominator: dict | None) -> str:
    if not numerator or not denominator or numerator["status"] != "ok" or denominator["status"] != "ok":
        return ""
    return f"{number(numerator, 'ms') / number(denominator, 'ms'):.2f}"


def mode_table(rows: list[dict], loss: str, mode: str) -> list[str]:
    """Markdown lines: one line per case, ms and MiB per implementation, floor and speed-ups."""
    rows = [r for r in rows if r["loss"] == loss and r["mode"] == mode]
    if not rows:
        return []
    impls = [i for i in IMPLEMENTATIONS if any(r["impl"] == i for r in rows)]
    case_columns = ["B", "L", "N", "ions", "charges", "dtype"] if loss == "spectrum" else ["B", "L", "dtype"]
    by_case: dict[tuple, dict[str, dict]] = {}
    for r in sorted(rows, key=_case_sort_key):
        by_case.setdefault(tuple(r[c] for c in case_columns), {})[r["impl"]] = r
    header = [*case_columns, *(f"{i} ms" for i in impls), *(f"{i} MiB" for i in impls if i != "keops"),
              "floor ms", "triton / floor", "eager / triton", "compile / triton"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for case, found in by_case.items():
        any_row = next(iter(found.values()))
        triton = found.get("triton")
        cells = [*case, *(_cell(found.get(i), "ms") for i in impls),
                 *(_cell(found.get(i), "peak_extra_mib") for i in impls if i != "keops"),
                 short(number(any_row, "floor_ms")),
                 _cell(triton, "vs_floor") if triton else "",
                 _ratio(found.get("eager"), triton), _ratio(found.get("compile"), triton)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def environment_lines(rows: list[dict]) -> list[str]:
    lines = ["| | |", "|---|---|"]
    for column in ENVIRONMENT:
        values = sorted({r.get(column, "") for r in rows} - {""})
        if column in ("copy_gbps", "fp32_tfma", "host_floor_ms"):
            values = [short(float(v)) for v in values]
        label = {"copy_gbps": "HBM copy GB/s (measured)", "fp32_tfma": "fp32 T FMA/s (measured)",
                 "fp32_method": "fp32 rate method",
                 "host_floor_ms": "host floor ms: latency of grad(x.sum(), x), 1 element"}.get(column, column)
        lines.append(f"| {label} | {', '.join(values)} |")
    return lines


def goal_lines(rows: list[dict]) -> list[str]:
    lines = ["| goal | measured | outcome |", "|---|---|---|"]
    lines += [f"| {v.goal} | {v.measured} | {v.outcome} |" for v in goals.check(rows)]
    return lines


def train_step_lines(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if r["loss"] == TRAIN_STEP]
    if not rows:
        return []
    lines = ["| losses | B | ms per step | peak MiB | status |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['impl']} | {r['B']} | {short(number(r, 'ms'))} | {short(number(r, 'peak_extra_mib'))} | {r['status']} |")
    return lines


def reason_lines(rows: list[dict]) -> list[str]:
    """Every distinct non-ok status with its implementations and count."""
    counts = Counter((r["status"], r["impl"]) for r in rows if r["status"] != "ok")
    return [f"- {impl}, {count} rows: {status}" for (status, impl), count in sorted(counts.items())]


def markdown(rows: list[dict], notes: list[str], plots: list[str]) -> str:
    lines = [f"# Benchmark results: {', '.join(sorted({r['device'] for r in rows}))}", ""]
    lines += ["Times: median latency of one call in ms (cold L2, idle GPU at the start, host launch",
              "cost included; see benchmarks/kernels/README.md); `fwd+bwd graph`: the device time of fwd+bwd",
              "replayed from a CUDA graph. MiB: peak memory allocated beyond the inputs. floor: the",
              "roofline (HBM bytes over the measured copy bandwidth, or the search's fp32 work).",
              "`eager / triton` and `compile / triton` are speed-ups of triton (> 1: triton faster).",
              "OOM: out of memory; n/a: not run; fail: failed (reasons at the end).", ""]
    lines += ["## Environment", "", *environment_lines(rows), ""]
    if notes:
        lines += ["## Notes", "", *(f"- {n}" for n in notes), ""]
    lines += ["## Goals", "", *goal_lines(rows), ""]
    for loss, title in TITLES.items():
        for mode in MODE_ORDER:
            table = mode_table(rows, loss, mode)
            if table:
                lines += [f"## {title}: {mode}", "", *table, ""]
    train = train_step_lines(rows)
    if train:
        lines += ["## End to end: one training step", "", *train, ""]
    if plots:
        lines += ["## Plots", "", *(f"![{p}]({p})" for p in plots), ""]
    reasons = reason_lines(rows)
    if reasons:
        lines += ["## Not measured", "", *reasons, ""]
    return "\n".join(lines)


def write_markdown(path: Path, rows: list[dict], notes: list[str], plots: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(rows, notes, plots))
