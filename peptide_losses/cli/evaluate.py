"""PSMs against annotated spectra: peptide recall, amino-acid precision and recall (Casanovo's
mass-based definitions, I = L) and the precision-coverage curve of the PSMs' scores.

ANNOTATED is an MGF with SEQ= lines, an MGF plus --peprec (ms2pip's PEPREC, joined on TITLE),
or a shipped set; the PSMs' spectra_ref must point into it. Spectra without a PSM count
as not found.

    peptide-losses evaluate psms.mztab massivekb-test --plot curve.png --json metrics.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..evaluation import evaluate_psms
from ..mztab import read_psms
from ..vocabulary import Vocabulary
from .inputs import SPECTRA_HELP, read_input

HELP = "peptide recall, amino-acid precision / recall and precision-coverage of PSMs"
ROWS = (("spectra", "annotated spectra", "{:d}"), ("psms", "spectra with a PSM", "{:d}"),
        ("peptide_recall", "peptide recall", "{:.3f}"), ("aa_precision", "amino-acid precision", "{:.3f}"),
        ("aa_recall", "amino-acid recall", "{:.3f}"),
        ("precision_at_full_coverage", "peptide precision (all PSMs)", "{:.3f}"),
        ("auc", "precision-coverage AUC", "{:.3f}"))


def add_arguments(p) -> None:
    p.add_argument("psms", metavar="PSMS.mztab", help="PSMs, one or more per spectrum (the best-scored counts)")
    p.add_argument("annotated", metavar="ANNOTATED", help=f"the annotated spectra: {SPECTRA_HELP}")
    p.add_argument("--peprec", help="ms2pip PEPREC table annotating ANNOTATED's spectra by TITLE")
    p.add_argument("--plot", metavar="CURVE.png", help="write the precision-coverage curve (needs matplotlib)")
    p.add_argument("--json", metavar="OUT.json", help="write the metrics and the curve as JSON")


def plot(metrics: dict, path: str, title: str) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ValueError(f"--plot {path}: needs matplotlib (pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    curve = metrics["curve"]
    ax.plot(curve["coverage"], curve["precision"], label=f"AUC {metrics['auc']:.3f}")
    ax.set(xlabel="coverage (PSMs / annotated spectra)", ylabel="peptide precision", xlim=(0, 1), ylim=(0, 1.02),
           title=title)
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(args) -> int:
    vocabulary = Vocabulary.default()
    psms = read_psms(args.psms)
    annotated = read_input(args.annotated, vocabulary, args.peprec)
    metrics = evaluate_psms(psms, annotated, vocabulary, args.psms)
    for key, title, fmt in ROWS:
        print(f"{title:<30} {fmt.format(metrics[key])}")
    if args.json:
        Path(args.json).write_text(json.dumps({"psms_file": args.psms, "annotated": args.annotated, **metrics}) + "\n")
    if args.plot:
        plot(metrics, args.plot, f"{Path(args.psms).name} vs {Path(args.annotated).name}")
    print(f"peptide-losses evaluate: {metrics['psms']} PSMs of {metrics['spectra']} annotated spectra", file=sys.stderr)
    return 0
