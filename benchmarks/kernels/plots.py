"""PNG plots: time and peak memory against B, N and L, one line per implementation.

Each plot follows one axis through the grid's centre point (the other sizes and
options held at the centre), one column per mode, log-log, with the roofline
floor dashed. Uses matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator  # noqa: E402

from .goals import number  # noqa: E402
from .grid import Case  # noqa: E402
from .implementations import GRAPH_MODE, IMPLEMENTATIONS  # noqa: E402
from .measure import case_fields  # noqa: E402
from .report import MODE_ORDER  # noqa: E402

AXES = {"spectrum": ("B", "N", "L"), "precursor": ("B", "L")}
AXIS_NAMES = {"B": "batch size B", "N": "observed peaks N", "L": "positions L"}
STYLE = {"triton": ("tab:blue", "o"), "eager": ("tab:orange", "s"), "compile": ("tab:green", "^"),
         "keops": ("tab:purple", "D")}
LABELS = {"keops": "keops (search only)"}
PANELS = (("ms", "time per call (ms)"), ("peak_extra_mib", "peak extra memory (MiB)"))


def line_rows(rows: list[dict], center: Case, axis: str) -> list[dict]:
    """The ok rows of ``center``'s loss that equal the centre on every case column but ``axis``."""
    fixed = {k: str(v) for k, v in case_fields(center).items() if k not in (axis, "M")}
    return [r for r in rows if r["status"] == "ok" and all(r.get(k) == v for k, v in fixed.items())]


def _series(rows: list[dict], axis: str, column: str) -> tuple[list[float], list[float]]:
    points = sorted((float(r[axis]), number(r, column)) for r in rows if number(r, column) is not None)
    return [x for x, _ in points], [y for _, y in points]


def plot_axis(rows: list[dict], center: Case, axis: str, path: Path) -> bool:
    """Draw one figure; False (nothing written) if the line has fewer than two sizes."""
    on_line = line_rows(rows, center, axis)
    if len({r[axis] for r in on_line}) < 2:
        return False
    modes = [m for m in MODE_ORDER if any(r["mode"] == m for r in on_line)]
    fig, grid = plt.subplots(len(PANELS), len(modes), figsize=(4.6 * len(modes), 7.5), squeeze=False)
    for col, mode in enumerate(modes):
        in_mode = [r for r in on_line if r["mode"] == mode]
        for row_index, (column, label) in enumerate(PANELS):
            ax = grid[row_index][col]
            for impl in IMPLEMENTATIONS:
                xs, ys = _series([r for r in in_mode if r["impl"] == impl], axis, column)
                if xs:
                    color, marker = STYLE[impl]
                    ax.plot(xs, ys, marker=marker, color=color, label=LABELS.get(impl, impl))
            if column == "ms":
                xs, ys = _series(_one_per_case(in_mode, axis), axis, "floor_ms")
                ax.plot(xs, ys, "k--", linewidth=1, label="roofline floor")
            if not ax.lines:
                text = "a replay allocates nothing" if mode == GRAPH_MODE and column != "ms" else "not measured"
                ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
            else:
                ax.set_xscale("log")
                ax.set_yscale("log")
                sizes = sorted({float(r[axis]) for r in in_mode})
                ax.xaxis.set_major_locator(FixedLocator(sizes))
                ax.xaxis.set_major_formatter(FixedFormatter([f"{x:g}" for x in sizes]))
                ax.xaxis.set_minor_locator(NullLocator())
                ax.legend(fontsize=8)
            ax.grid(True, which="both", alpha=0.3)
            ax.set_xlabel(AXIS_NAMES[axis])
            ax.set_ylabel(label)
            if row_index == 0:
                ax.set_title(mode)
    held = center.label().replace(f" {axis}={getattr(center, _FIELD[axis])}", "")
    fig.suptitle(f"{held}, varying {axis}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


_FIELD = {"B": "batch", "N": "n_peaks", "L": "length"}


def _one_per_case(rows: list[dict], axis: str) -> list[dict]:
    """One row per value of ``axis`` (the floor is the same for every implementation)."""
    return list({r[axis]: r for r in rows}.values())


def write_plots(rows: list[dict], centers: dict[str, Case], folder: Path) -> list[str]:
    """All plots that have data; returns their file names."""
    written = []
    for loss, axes in AXES.items():
        for axis in axes:
            name = f"{loss}_vs_{axis}.png"
            if loss in centers and plot_axis(rows, centers[loss], axis, folder / name):
                written.append(name)
    return written
