"""Fit the judge of a checkpoint on annotated spectra: decode each with the default spectrum-guided
beam, label every candidate by its annotation (mass-based match, I = L) and fit a logistic
regression from the candidates' features to P(correct) (peptide_losses.judge).

Fit on spectra you will not report on. The judge shipped with the package was fitted on the
MassIVE-KB calibration half (python -m benchmarks.sequencing.judge, which also chooses --l2).

    peptide-losses fit-judge my_annotated.mgf -o my.judge.json
    peptide-losses sequence my_spectra.mgf -o psms.mztab --judge my.judge.json
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from ..judge import fit_judge
from ..judge_data import labelled_beams
from ..predicted_intensity import available as ms2pip_available
from ..sequencing import DEFAULT_CHECKPOINT
from .inputs import SPECTRA_HELP, read_input
from .sequence import load

HELP = "fit a judge (P(correct) of each candidate) on annotated spectra"


def add_arguments(p) -> None:
    p.add_argument("annotated", metavar="ANNOTATED", help=f"annotated spectra: {SPECTRA_HELP}")
    p.add_argument("-o", "--output", required=True, metavar="JUDGE.json", help="the judge file to write")
    p.add_argument("--peprec", help="ms2pip PEPREC table annotating ANNOTATED's spectra by TITLE")
    p.add_argument("--checkpoint", help=f"the model it judges (default: the shipped {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 weight on the standardised weights (default: 1e-3)")
    p.add_argument("--beam-size", type=int, metavar="K", help="candidates per spectrum (default: the checkpoint's)")
    p.add_argument("--ms2pip", action="store_true",
                   help="also read ms2pip's predicted-intensity correlation (needs ms2pip: pip install -e '.[simulate]')")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    if not args.l2 >= 0:
        raise ValueError(f"--l2 must be >= 0, got {args.l2}")
    if args.ms2pip and not ms2pip_available():
        raise ValueError("--ms2pip needs ms2pip: pip install -e '.[simulate]'")
    sequencer = load(args)
    spectra = [s for _, s in read_input(args.annotated, sequencer.vocabulary, args.peprec)]
    with tqdm(total=len(spectra), unit="spectrum", disable=args.no_progress, file=sys.stderr) as bar:
        beams = labelled_beams(sequencer, spectra, args.beam_size, progress=bar.update, intensity=args.ms2pip)
    judge = fit_judge(beams.features[beams.valid], beams.correct[beams.valid], l2=args.l2,
                      fitted_on=f"{args.annotated}: {len(spectra)} spectra, {int(beams.valid.sum())} candidates, "
                                f"{int(beams.correct.sum())} correct; l2 {args.l2}")
    judge.save(args.output)
    print(f"peptide-losses fit-judge: {judge.fitted_on} -> {args.output}", file=sys.stderr)
    return 0
