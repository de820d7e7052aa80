"""The end of a run on the console: a split x decoding table of the main metrics, and a closing line.

The table is built from whatever ``val/<split>/<decoding>/<metric>`` keys the final metrics
hold, so a new split or decoding shows up without a change here; the full list is in
``final_metrics.json``.
"""

from __future__ import annotations

#: (metric key, column title, format) of the table.
COLUMNS = (
    ("peptide_recall", "peptide recall", "{:.3f}"),
    ("token_accuracy", "token accuracy", "{:.3f}"),
    ("precursor_match", "precursor match", "{:.3f}"),
    ("ppm_error", "median ppm", "{:,.1f}"),
)


def summary_table(final: dict[str, float]) -> list[str]:
    """Lines of a table with one row per (split, decoding) found in ``final``; [] if none."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for name, value in final.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "val":
            rows.setdefault((parts[1], parts[2]), {})[parts[3]] = value
    if not rows:
        return []
    header = ["split", "decoding", *(title for _, title, _ in COLUMNS)]
    body = [[split, decoding, *(fmt.format(metrics[key]) if key in metrics else "-" for key, _, fmt in COLUMNS)]
            for (split, decoding), metrics in rows.items()]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in [header, *body]]


def closing_line(final: dict[str, float]) -> str:
    """One line on what this run reached, from its own final metrics: per split, the best
    peptide recall over its decodings (and which); where to compare it."""
    best: dict[str, tuple[float, str]] = {}
    for name, value in final.items():
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "val" and parts[3] == "peptide_recall":
            if parts[1] not in best or value > best[parts[1]][0]:
                best[parts[1]] = (value, parts[2])
    reached = ", ".join(f"{split} {value:.3f} ({decoding})" for split, (value, decoding) in best.items())
    return (f"this run's best peptide recall per split: {reached or 'none validated'}; what the presets reach: "
            "docs/trainer.md, 'What it reaches'")
