"""PNG plots of a run's curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import re
from pathlib import Path

#: (title, y-axis label, regular expression of the metric names, scale). A
#: metric's label in the legend is its name without the parts the panel's
#: expression fixes (``val/easy/greedy/peptide_recall`` -> ``easy/greedy``).
PANELS = (
    ("Cross-entropy", "CE (nats per scored token)", r"(train/ce_final|val/.*/ce)$", "linear"),
    ("Mass losses, unweighted", "spectrum (Da), precursor (log-ppm)", r"train/(spectrum|precursor)_loss$", "log"),
    ("Training accuracy (teacher forced)", "fraction", r"train/(token|sequence)_accuracy$", "linear"),
    ("Validation token accuracy", "fraction", r"val/.*/token_accuracy$", "linear"),
    ("Validation peptide recall", "fraction of spectra", r"val/.*/peptide_recall$", "linear"),
    ("Predictions within the precursor tolerance", "fraction of spectra", r"val/.*/precursor_match$", "linear"),
    ("Median precursor error of the predictions", "ppm", r"(train|val/.*)/ppm_error$", "log"),
    ("Loss weights (schedule x balancing)", "weight", r"curriculum/.*_weight$", "linear"),
    ("Factors on the mass losses", "factor (log)", r"(balancing/.*_factor|train/(spectrum|precursor)_factor)$", "log"),
    ("Share of the total loss (values)", "fraction", r"share/.*$", "linear"),
    ("Throughput", "spectra per second", r"time/spectra_per_s$", "linear"),
    ("Time per step", "ms (device time on a GPU, wall time on the CPU)", r"time/.*_ms$", "linear"),
)
_NOISE = re.compile(r"^(train|val|curriculum|balancing|share|time)/|/?(token_accuracy|peptide_recall|precursor_match|"
                    r"ppm_error|_weight|_factor|_loss|_ms|spectra_per_s)$")


def _series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for name, value in record.items():
            if name != "step":
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(value)
    return series


def _label(name: str) -> str:
    return (_NOISE.sub("", name) or name.rsplit("/", 1)[-1]).replace("_", " ")


def _panel_series(series, pattern: str, scale: str) -> tuple[list[str], list[str]]:
    """(names drawn, names left out as 0 throughout) of a panel; a log panel also leaves out
    series with values <= 0. Constant-0 series (a weight that is off) would all lie on one line."""
    drawn, zero = [], []
    for name, (_, values) in sorted(series.items()):
        if not re.fullmatch(pattern, name):
            continue
        if not any(values):
            zero.append(name)
        elif not (scale == "log" and min(values) <= 0):
            drawn.append(name)
    return drawn, zero


def plot_curves(records: list[dict], path: str | Path) -> Path | None:
    """Draw the run's curves into one PNG at ``path``; None if there is nothing to plot.

    One panel per entry of :data:`PANELS` that has a curve to show; series at 0
    throughout are named in the legend instead of drawn; validation points are
    marked. Legends sit outside the axes so they never cover a curve.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(records)
    panels = [(panel, *_panel_series(series, panel[2], panel[3])) for panel in PANELS]
    panels = [(panel, drawn, zero) for panel, drawn, zero in panels if drawn]
    if not panels:
        return None
    rows = -(-len(panels) // 3)
    fig, axes = plt.subplots(rows, 3, figsize=(21, 4.25 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.remove()
    for ax, ((title, ylabel, _, scale), drawn, zero) in zip(axes.flat, panels):
        for name in drawn:
            steps, values = series[name]
            ax.plot(steps, values, label=_label(name), marker="o" if name.startswith("val/") else None,
                    markersize=3)
        if zero:
            ax.plot([], [], " ", label=", ".join(_label(name) for name in zero) + ": 0 throughout")
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_yscale(scale)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
