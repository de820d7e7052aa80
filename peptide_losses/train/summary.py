"""The end of a run on the console: a split x decoding table of the main metrics, and what to expect.

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


def expectation(preset: str | None, device: str) -> str:
    """One line on what a run like this one reaches (measured numbers: README, "What it reaches")."""
    if preset == "gpu":
        return ("expected for --preset gpu (one H200, ~7.5 min): peptide recall greedy / precursor beam / "
                "spectrum rerank easy ~0.95 / 0.96 / 0.96, hard ~0.39 / 0.43 / 0.50, real ~0.16 / 0.20 / 0.23 "
                "(README, 'What it reaches')")
    if device == "cpu":
        return ("expected on the CPU: learning, not sequencing (CE falls, token accuracy rises; peptide recall ~0 "
                "and precursor errors of thousands of ppm); to sequence peptides run --preset gpu on a GPU")
    return "for comparison, --preset gpu on one H200 reaches easy peptide recall ~0.95 (README, 'What it reaches')"
