"""Another tool's PSMs (e.g. Casanovo's mzTab with top_match K) rescored by the spectrum and the
precursor, and reranked within each spectrum.

For each PSM: combined = the tool's search_engine_score[1]
- W * (spectrum score in Da + 0.01 if the precursor is more than --precursor-tolerance ppm off
at every isotope error). At the default W = 100 an off-mass candidate loses 1, as in the
package's own decoding (peptide_losses.decoding.rerank); W = 0 changes no score and no order. The output is the input file with each spectrum's PSM rows reordered best
first (in the slots its rows held), search_engine_score[1] replaced by the combined score and
opt_global_original_score, opt_global_spectrum_score, opt_global_precursor_ppm set.
A PSM whose combined score is not finite (a null score) ranks last.

    peptide-losses rescore casanovo.mztab spectra.mgf -o rescored.mztab
"""

from __future__ import annotations

import math
import sys

import torch

from ..decoding import candidate_ppm
from ..integrations.candidates import candidate_tokens
from ..mztab import SCORE_COLUMN, MzTabError, read_psm_file
from ..scoring import spectrum_scores
from ..spectra import collate
from ..vocabulary import Vocabulary
from .inputs import SPECTRA_HELP, add_backend_argument, read_input

HELP = "rerank another tool's PSMs (mzTab) by the spectrum and the precursor"
DEFAULT_WEIGHT = 100.0
#: Spectrum-score Da that an off-mass candidate pays per unit of weight: 1 at the default weight.
PRECURSOR_PENALTY = 1 / DEFAULT_WEIGHT
#: Spectra scored at once: the reference scorer holds (spectra x K, peaks, ions) distances.
CHUNK = 256
ADDED_COLUMNS = ("opt_global_original_score", "opt_global_spectrum_score", "opt_global_precursor_ppm")


def add_arguments(p) -> None:
    p.add_argument("psms", metavar="PSMS.mztab", help="the tool's PSMs, several per spectrum")
    p.add_argument("spectra", metavar="SPECTRA", help=f"the spectra its spectra_ref points into: {SPECTRA_HELP}")
    p.add_argument("-o", "--output", required=True, metavar="OUT.mztab", help="the reranked mzTab to write")
    p.add_argument("--weight", type=float, default=DEFAULT_WEIGHT, metavar="W",
                   help="weight of the spectrum and precursor evidence against the tool's score "
                        "(default: %(default)s; 0 keeps the tool's order)")
    p.add_argument("--precursor-tolerance", type=float, default=20.0, metavar="PPM",
                   help="precursor tolerance in ppm (default: %(default)s)")
    add_backend_argument(p)
    p.add_argument("--isotope-errors", type=int, nargs="+", default=[0, 1], metavar="I",
                   help="isotope errors allowed when matching the precursor (default: 0 1, as Casanovo)")


def evidence(sequences: list[list[str]], spectra, vocabulary: Vocabulary, tolerance: float, isotope_errors,
             backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, K) spectrum scores (Da), precursor ppm (the smallest over ``isotope_errors``) and the cost
    ``spectrum score + PRECURSOR_PENALTY * 1[ppm > tolerance]`` of each spectrum's candidates
    (K = the most of any spectrum: a spectrum with fewer has empty slots past its own)."""
    k = max(map(len, sequences))
    rows = candidate_tokens(sequences, vocabulary, beam_size=k).tokens
    batch = collate(list(spectra), vocabulary)
    masses = vocabulary.mass_tensor()
    scores = spectrum_scores(rows, batch.mz, batch.intensity, masses=masses, peak_mask=batch.peak_mask,
                             backend=backend)
    ppm = candidate_ppm(rows, masses, batch.precursor_mz, batch.charge, tuple(isotope_errors))
    # A NaN ppm (a bad precursor) cannot show that the candidate fits: it pays the penalty.
    cost = scores + PRECURSOR_PENALTY * ~(ppm <= tolerance)
    return scores, ppm, cost


def _cell(value: float) -> str:
    return "null" if math.isnan(value) else repr(value)


def run(args) -> int:
    if not math.isfinite(args.weight) or args.weight < 0:
        raise ValueError(f"--weight must be a finite number >= 0, got {args.weight}")
    if not args.precursor_tolerance >= 0:
        raise ValueError(f"--precursor-tolerance must be >= 0 ppm, got {args.precursor_tolerance}")
    vocabulary = Vocabulary.default()
    lines, header, psms = read_psm_file(args.psms)
    if not psms:
        raise MzTabError(f"{args.psms}: no PSM rows to rescore")
    spectra = {item.ref: item.spectrum for item in read_input(args.spectra, vocabulary)}
    groups: dict[str, list] = {}
    for psm in psms:
        if psm.ref not in spectra:
            raise MzTabError(f"{args.psms}, line {psm.line}: spectra_ref ms_run[1]:{psm.ref} is not a spectrum of "
                             f"{args.spectra} ({len(spectra)} spectra)")
        try:
            vocabulary.encode(psm.sequence)
        except ValueError as err:
            raise MzTabError(f"{args.psms}, line {psm.line}: sequence {psm.sequence!r}: {err}") from None
        groups.setdefault(psm.ref, []).append(psm)
    columns = header + [c for c in ADDED_COLUMNS if c not in header]
    out = [("\t".join(["PSH", *columns]) if line.split("\t")[0] == "PSH" else line) for line in lines]
    moved = 0
    refs = list(groups)
    for start in range(0, len(refs), CHUNK):
        chunk = refs[start:start + CHUNK]
        scores, ppm, cost = evidence([[p.sequence for p in groups[r]] for r in chunk], [spectra[r] for r in chunk],
                                     vocabulary, args.precursor_tolerance, args.isotope_errors, args.backend)
        # float64: at weight 0 the tool's scores are written back to the last digit.
        tool = torch.full(cost.shape, -torch.inf, dtype=torch.float64)
        for b, ref in enumerate(chunk):
            tool[b, :len(groups[ref])] = torch.tensor([p.score for p in groups[ref]], dtype=torch.float64)
        # 0 * an unscorable candidate's +inf cost would be NaN: no evidence is no change.
        combined = (tool if args.weight == 0 else tool - args.weight * cost.double()).tolist()
        for b, ref in enumerate(chunk):
            group, values = groups[ref], combined[b][:len(groups[ref])]
            order = list(range(len(group)))
            if args.weight != 0:  # best first, stable, a non-finite score last
                order.sort(key=lambda i: -values[i] if math.isfinite(values[i]) else math.inf)
            moved += order[0] != 0
            for slot, i in zip(group, order):
                cells = lines[group[i].line - 1].split("\t")[1:]
                cells += ["null"] * (len(columns) - len(cells))
                new = {SCORE_COLUMN: values[i], "opt_global_original_score": group[i].score,
                       "opt_global_spectrum_score": float(scores[b, i]), "opt_global_precursor_ppm": float(ppm[b, i])}
                for name, value in new.items():
                    cells[columns.index(name)] = _cell(value)
                out[slot.line - 1] = "\t".join(["PSM", *cells])
    with open(args.output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(out) + "\n")
    print(f"peptide-losses rescore: {len(psms)} PSMs of {len(refs)} spectra; the top PSM changed in {moved} spectra "
          f"(weight {args.weight}); -> {args.output}", file=sys.stderr)
    return 0
