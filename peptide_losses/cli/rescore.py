"""Another tool's PSMs (e.g. Casanovo's mzTab with top_match K) rescored by the spectrum and the
precursor, and reranked within each spectrum.

Plain (the default): combined = the tool's search_engine_score[1]
- W * (spectrum score in Da + 0.01 if the precursor is more than --precursor-tolerance ppm off
at every isotope error). At the default W = 100 an off-mass candidate loses 1, as in the
package's own decoding (peptide_losses.decoding.rerank); W = 0 changes no score and no order.

With ``--judge TOOL.judge.json`` (a judge of this tool's PSMs, from ``peptide-losses fit-judge
--psms``): combined = the judge's P(correct) from the tool's score, rank and margin and the
spectrum's, precursor's and fragment ions' evidence (peptide_losses.features.psm_features).
A judge is fitted per tool: the scale of one tool's score says nothing of another's.

The output is the input file with each spectrum's PSM rows reordered best
first (in the slots its rows held), search_engine_score[1] replaced by the combined score and
opt_global_original_score, opt_global_spectrum_score, opt_global_precursor_ppm set.
A PSM whose combined score is not finite (a null score) ranks last.

    peptide-losses rescore casanovo.mztab spectra.mgf -o rescored.mztab
    peptide-losses fit-judge annotated.mgf --psms casanovo_on_annotated.mztab -o casanovo.judge.json
    peptide-losses rescore casanovo.mztab spectra.mgf -o rescored.mztab --judge casanovo.judge.json
"""

from __future__ import annotations

import math
import sys

from ..judge import Judge
from ..mztab import SCORE_COLUMN
from ..rescoring import CHUNK, PRECURSOR_PENALTY, evidence, judge_features, read_tool_psms
from ..vocabulary import Vocabulary
from .inputs import SPECTRA_HELP, add_backend_argument, read_input

HELP = "rerank another tool's PSMs (mzTab) by the spectrum and the precursor, or by a judge of the tool's PSMs"
#: At the default weight an off-mass candidate loses 1 (PRECURSOR_PENALTY * DEFAULT_WEIGHT).
DEFAULT_WEIGHT = 1 / PRECURSOR_PENALTY
ADDED_COLUMNS = ("opt_global_original_score", "opt_global_spectrum_score", "opt_global_precursor_ppm")


def add_arguments(p) -> None:
    p.add_argument("psms", metavar="PSMS.mztab", help="the tool's PSMs, several per spectrum")
    p.add_argument("spectra", metavar="SPECTRA", help=f"the spectra its spectra_ref points into: {SPECTRA_HELP}")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mztab", help="the reranked mzTab to write")
    p.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, metavar="W",
                   help="weight of the spectrum and precursor evidence against the tool's score "
                        "(default: %(default)s; 0 keeps the tool's order); not with --judge")
    p.add_argument("--judge", metavar="JUDGE.json",
                   help="a judge of this tool's PSMs (peptide-losses fit-judge --psms): score = its P(correct)")
    p.add_argument("--precursor-tolerance", type=float, default=20.0, metavar="PPM",
                   help="precursor tolerance in ppm (default: %(default)s)")
    add_backend_argument(p)
    p.add_argument("--isotope-errors", type=int, nargs="+", default=[0, 1], metavar="I",
                   help="isotope errors allowed when matching the precursor (default: 0 1, as Casanovo)")


def _cell(value: float) -> str:
    return "null" if math.isnan(value) else repr(value)


def run(args) -> int:
    if not math.isfinite(args.weight) or args.weight < 0:
        raise ValueError(f"--weight must be a finite number >= 0, got {args.weight}")
    if not args.precursor_tolerance >= 0:
        raise ValueError(f"--precursor-tolerance must be >= 0 ppm, got {args.precursor_tolerance}")
    if args.judge and args.weight != DEFAULT_WEIGHT:
        raise ValueError("--weight sets the plain rescore; with --judge the judge weighs the evidence: drop one")
    judge = Judge.load(args.judge, "psm") if args.judge else None
    vocabulary = Vocabulary.default()
    spectra = {item.ref: item.spectrum for item in read_input(args.spectra, vocabulary)}
    tool = read_tool_psms(args.psms, spectra, args.spectra, vocabulary)
    lines, header, psms = tool.file
    groups = tool.groups
    columns = header + [c for c in ADDED_COLUMNS if c not in header]
    out = [("\t".join(["PSH", *columns]) if line.split("\t")[0] == "PSH" else line) for line in lines]
    moved = 0
    refs = list(groups)
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start:start + CHUNK]
        found = evidence([groups[r] for r in chunk], [tool.spectra[r] for r in chunk], vocabulary,
                         args.precursor_tolerance, args.isotope_errors, args.backend)
        if judge is not None:
            features, valid = judge_features(found, vocabulary, args.precursor_tolerance, args.backend,
                                             judge.intensity_source)
            combined = judge.probability(features, valid).tolist()
        else:
            # 0 * an unscorable candidate's +inf cost would be NaN: no evidence is no change.
            combined = (found.score if args.weight == 0 else found.score - args.weight * found.cost.double()).tolist()
        for b, ref in enumerate(chunk):
            group, values = groups[ref], combined[b][:len(groups[ref])]
            order = list(range(len(group)))
            if judge is not None or args.weight != 0:  # best first, stable, a non-finite score last
                order.sort(key=lambda i: -values[i] if math.isfinite(values[i]) else math.inf)
            moved += order[0] != 0
            for slot, i in zip(group, order):
                cells = lines[group[i].line - 1].split("\t")[1:]
                cells += ["null"] * (len(columns) - len(cells))
                new = {SCORE_COLUMN: values[i], "opt_global_original_score": group[i].score,
                       "opt_global_spectrum_score": float(found.spectrum[b, i]),
                       "opt_global_precursor_ppm": float(found.ppm[b, i])}
                for name, value in new.items():
                    cells[columns.index(name)] = _cell(value)
                out[slot.line - 1] = "\t".join(["PSM", *cells])
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(out) + "\n")
    how = f"judge {args.judge}" if judge is not None else f"weight {args.weight}"
    print(f"peptide-losses rescore: {len(psms)} PSMs of {len(refs)} spectra; the top PSM changed in {moved} spectra "
          f"({how}); -> {args.output}", file=sys.stderr)
    return 0
