"""PNG plots of a run's curves (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

PANELS = (
    ("Cross-entropy and total loss", ("train/ce_final", "train/total_loss"), "linear"),
    ("Mass losses (unweighted)", ("train/spectrum_loss", "train/precursor_loss"), "log"),
    ("Accuracy", ("train/token_accuracy", "train/sequence_accuracy", "/token_accuracy", "/aa_precision",
                  "/aa_recall", "/peptide_recall"), "linear"),
    ("Median precursor error of predictions (ppm)", ("ppm_error",), "log"),
    ("Curriculum weights", ("curriculum/",), "linear"),
    ("Share of the total loss", ("share/",), "linear"),
)


def _series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        for name, value in record.items():
            if name != "step":
                steps, values = series.setdefault(name, ([], []))
                steps.append(record["step"])
                values.append(value)
    return series


def plot_curves(records: list[dict], path: str | Path) -> Path | None:
    """Draw the run's curves into one PNG at ``path``; None if there is nothing to plot.

    A panel shows every metric whose name ends with (or, for prefixes ending in
    ``/``, starts with) one of its patterns.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = _series(records)
    if not series:
        return None
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    for ax, (title, patterns, scale) in zip(axes.flat, PANELS):
        for name, (steps, values) in sorted(series.items()):
            chosen = any(name.startswith(p) if p.endswith("/") else name.endswith(p) for p in patterns)
            if chosen and not (scale == "log" and min(values) <= 0):
                ax.plot(steps, values, label=name, marker="o" if name.startswith("val/") else None, markersize=3)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale(scale)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
