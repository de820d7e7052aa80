"""Fit a judge on annotated spectra: label every candidate by its spectrum's annotation (mass-based
match, I = L) and fit a logistic regression from the candidates' features to P(correct)
(peptide_losses.judge).

- The judge of a checkpoint (``sequence --judge``): each spectrum decoded with the default
  spectrum-guided beam, the candidates' features of peptide_losses.features.FEATURES.
- With ``--psms TOOL.mztab``, the judge of another tool's PSMs (``rescore --judge``): the tool's
  PSMs of the annotated spectra (several per spectrum, as rescore reads them), their features
  of peptide_losses.features.PSM_FEATURES, the tool's score among them. Fit one per tool.

Fit on spectra you will not report on. The judge shipped with the package was fitted on the
MassIVE-KB calibration half (python -m benchmarks.sequencing.judge, which also chooses --l2).

    peptide-losses fit-judge my_annotated.mgf -o my.judge.json
    peptide-losses sequence my_spectra.mgf -o psms.mztab --judge my.judge.json
    peptide-losses fit-judge my_annotated.mgf --psms tool_on_annotated.mztab -o tool.judge.json
    peptide-losses rescore tool.mztab my_spectra.mgf -o rescored.mztab --judge tool.judge.json
"""

from __future__ import annotations

import math
import sys

import torch
from tqdm import tqdm

from ..judge import FEATURE_SETS, PSM_FEATURE_SETS, fit_judge
from ..judge_data import labelled_beams, matches_annotation
from ..predicted_intensity import SOURCES, check_source
from ..rescoring import CHUNK, evidence, judge_features, read_tool_psms
from ..sequencing import DEFAULT_CHECKPOINT
from ..vocabulary import Vocabulary
from .inputs import SPECTRA_HELP, add_backend_argument, read_input
from .sequence import load

HELP = "fit a judge (P(correct) of each candidate) on annotated spectra"


def add_arguments(p) -> None:
    p.add_argument("annotated", metavar="ANNOTATED", help=f"annotated spectra: {SPECTRA_HELP}")
    p.add_argument("-o", "--output", required=True, metavar="JUDGE.json", help="the judge file to write")
    p.add_argument("--peprec", help="ms2pip PEPREC table annotating ANNOTATED's spectra by TITLE")
    p.add_argument("--psms", metavar="TOOL.mztab",
                   help="another tool's PSMs of ANNOTATED: fit the judge of that tool's PSMs (for rescore --judge)")
    p.add_argument("--precursor-tolerance", type=float, default=20.0, metavar="PPM",
                   help="with --psms: precursor tolerance in ppm, as rescore will use it (default: %(default)s)")
    p.add_argument("--isotope-errors", type=int, nargs="+", default=[0, 1], metavar="I",
                   help="with --psms: isotope errors, as rescore will use them (default: 0 1)")
    p.add_argument("--checkpoint", help=f"the model it judges (default: the shipped {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--l2", type=float, default=1e-3, help="L2 weight on the standardised weights (default: 1e-3)")
    p.add_argument("--beam-size", type=int, metavar="K", help="candidates per spectrum (default: the checkpoint's)")
    p.add_argument("--intensities", choices=sorted(SOURCES),
                   help="also read the correlation of predicted b/y intensities with the peaks: by the package's "
                        "model (distilled from ms2pip, no extra) or by ms2pip itself (pip install -e '.[simulate]')")
    p.add_argument("--ms2pip", dest="intensities", action="store_const", const="ms2pip",
                   help="the same as --intensities ms2pip")
    add_backend_argument(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    if not 0 <= args.l2 < math.inf:
        raise ValueError(f"--l2 must be a finite number >= 0, got {args.l2}")
    if args.intensities is not None:
        check_source(args.intensities, f"--intensities {args.intensities}: ")
    if args.psms:
        features, correct, spectra = labelled_psms(args)
        what, names = f"{args.psms} on {args.annotated}", PSM_FEATURE_SETS[args.intensities]
    else:
        sequencer = load(args)
        items = read_input(args.annotated, sequencer.vocabulary, args.peprec)
        require_annotations({item.ref: item.spectrum for item in items}, args.annotated, "spectrum")
        annotated = [item.spectrum for item in items]
        with tqdm(total=len(annotated), unit="spectrum", disable=args.no_progress, file=sys.stderr) as bar:
            beams = labelled_beams(sequencer, annotated, args.beam_size, progress=bar.update,
                                   intensities=[args.intensities] if args.intensities else [])
        features, correct, spectra = beams.features[beams.valid], beams.correct[beams.valid], len(annotated)
        what, names = args.annotated, FEATURE_SETS[args.intensities]
    if not 0 < int(correct.sum()) < len(correct):
        raise ValueError(f"{what}: {int(correct.sum())} of {len(correct)} candidates match their spectrum's annotation: "
                         f"a judge learns from right and wrong ones (more spectra{'' if args.psms else ', a larger --beam-size'})")
    judge = fit_judge(features, correct, names=names, l2=args.l2,
                      fitted_on=f"{what}: {spectra} spectra, {len(correct)} candidates, {int(correct.sum())} correct; "
                                f"l2 {args.l2}")
    judge.save(args.output)
    print(f"peptide-losses fit-judge: {judge.fitted_on} -> {args.output}", file=sys.stderr)
    return 0


def require_annotations(spectra: dict, annotated: str, what: str) -> None:
    """ValueError naming the first of ``spectra`` (ref -> Spectrum, of the file or set ``annotated``) without
    an annotation: every one of ``what`` needs one to be labelled."""
    missing = [ref for ref, spectrum in spectra.items() if spectrum.tokens is None]
    if missing:
        raise ValueError(f"{annotated}: spectrum {missing[0]} has no annotation (SEQ=, or --peprec; {len(missing)} "
                         f"of {len(spectra)} have none): every {what} needs one")


def labelled_psms(args) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The features (R, F) and labels (R,) of the tool's PSMs with a finite score, and the spectra they are of."""
    if not args.precursor_tolerance >= 0:
        raise ValueError(f"--precursor-tolerance must be >= 0 ppm, got {args.precursor_tolerance}")
    vocabulary = Vocabulary.default()
    spectra = {item.ref: item.spectrum for item in read_input(args.annotated, vocabulary, args.peprec)}
    tool = read_tool_psms(args.psms, spectra, args.annotated, vocabulary)
    refs = list(tool.groups)
    require_annotations(tool.spectra, args.annotated, f"spectrum with a PSM in {args.psms}")
    parts = []
    for start in tqdm(range(0, len(refs), CHUNK), unit="chunk", disable=args.no_progress, file=sys.stderr):
        chunk = refs[start:start + CHUNK]
        found = evidence([tool.groups[r] for r in chunk], [tool.spectra[r] for r in chunk], vocabulary,
                         args.precursor_tolerance, args.isotope_errors, args.backend)
        features, valid = judge_features(found, vocabulary, args.precursor_tolerance, args.backend,
                                         args.intensities)
        correct = matches_annotation(found.tokens, [tool.spectra[r].tokens for r in chunk], vocabulary.mass_tensor())
        parts.append((features[valid], correct[valid]))
    features, correct = (torch.cat(p) for p in zip(*parts))
    return features, correct, len(refs)
