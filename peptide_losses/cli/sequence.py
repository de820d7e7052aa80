"""De novo peptides for every spectrum of a file, written as mzTab PSMs.

The model is the checkpoint's (default: the GPU preset's, shipped with the package);
each spectrum gets up to --top-k PSMs, ranked by the decoding's score (search_engine_score[1],
higher = better): by default the checkpoint's judge's P(correct) (peptide_losses.judge;
see peptide_losses.sequencing for the other decodings). A spectrum
none of whose candidates finished within the model's max_length tokens gets no PSM
and is counted in the closing summary.

    peptide-losses sequence massivekb-test -o psms.mztab
    peptide-losses sequence my_spectra.mgf -o psms.mztab --top-k 5 --device cuda
"""

from __future__ import annotations

import dataclasses
import sys
import time

import torch

from .. import __version__
from ..checks import checked_device
from ..mztab import PSM, write_psms
from ..judge import Judge
from ..sequencing import DECODINGS, DEFAULT_CHECKPOINT, Sequencer, load_sequencer
from .inputs import SPECTRA_HELP, add_backend_argument, read_input, spectra_path

HELP = "de novo peptides for every spectrum of a file, as mzTab"
#: A GPU batch's candidates (spectra x beam size) by default. A GPU decodes a beam step for 64 spectra
#: in about the time it takes for 1,024 (kernel launches, not arithmetic, set the pace): 360 vs 1,788
#: spectra/s at K=20 on an H100, peak 10.8 GiB at 1,024 (benchmarks/results/nvidia-h100-80gb-hbm3/).
GPU_CANDIDATES = 20_480


def add_arguments(p) -> None:
    p.add_argument("spectra", metavar="SPECTRA", help=SPECTRA_HELP)
    p.add_argument("-o", "--output", required=True, metavar="PSMS.mztab", help="the mzTab file to write")
    p.add_argument("--checkpoint", help=f"a trainer checkpoint (default: the shipped {DEFAULT_CHECKPOINT.name})")
    p.add_argument("--judge", metavar="JUDGE.json",
                   help="a judge from peptide-losses fit-judge (default: the checkpoint's <stem>.judge.json)")
    p.add_argument("--decoding", choices=DECODINGS,
                   help="judge: the guided beam chosen and scored by the checkpoint's judge (P(correct)); default: "
                        "spectrum-guided beam + spectrum rerank; precursor-beam: beam + precursor demotion; greedy: "
                        "one path (default: judge where the checkpoint has one, else default)")
    p.add_argument("--beam-size", type=int, metavar="K", help="candidates per spectrum (default: the checkpoint's, 20)")
    p.add_argument("--top-k", type=int, default=1, metavar="N", help="PSMs written per spectrum (default: 1)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    p.add_argument("--batch-size", type=int, metavar="B",
                   help="spectra per batch (default: 64 on the CPU; on a GPU 1,024, fewer for beams wider than 20: "
                        f"{GPU_CANDIDATES:,} candidates per batch)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    add_backend_argument(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def load(args) -> Sequencer:
    """The command's sequencer: --checkpoint on --device with --judge, the spectrum scores by --backend."""
    sequencer = load_sequencer(args.checkpoint, checked_device(args.device))
    changes = {"backend": getattr(args, "backend", "auto")}
    if getattr(args, "judge", None):
        changes["judge"] = Judge.load(args.judge, "beam")
    return dataclasses.replace(sequencer, **changes)


def default_batch_size(device: torch.device, beam_size: int) -> int:
    """Spectra per batch when --batch-size is not given: 64 on the CPU; on a GPU :data:`GPU_CANDIDATES`
    candidates, at most 1,024 spectra (the encoder's activations grow with spectra, not candidates)."""
    return 64 if device.type == "cpu" else max(1, min(1024, GPU_CANDIDATES // beam_size))


def run(args) -> int:
    for flag, value in (("--beam-size", args.beam_size), ("--top-k", args.top_k), ("--batch-size", args.batch_size),
                        ("--threads", args.threads)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sequencer = load(args)
    beam_size = args.beam_size or sequencer.config.decoding.beam_size
    batch_size = args.batch_size or default_batch_size(sequencer.device, beam_size)
    spectra = read_input(args.spectra, sequencer.vocabulary)
    from tqdm import tqdm

    psms, missing = [], 0
    with tqdm(total=len(spectra), unit="spectrum", disable=args.no_progress, file=sys.stderr) as bar:
        for start in range(0, len(spectra), batch_size):
            chunk = spectra[start:start + batch_size]
            ranked = sequencer.sequence([item.spectrum for item in chunk], args.decoding, args.beam_size, args.top_k)
            for (ref, spectrum), candidates in zip(chunk, ranked):
                missing += not candidates
                psms += [PSM(sequencer.vocabulary.decode(c.tokens), c.tokens, ref, rank, spectrum.charge,
                             spectrum.precursor_mz, sequencer.vocabulary.precursor_mz(c.tokens, spectrum.charge),
                             c.score, c.log_prob, c.ppm, c.spectrum_score)
                         for rank, c in enumerate(candidates, start=1)]
            bar.update(len(chunk))
    settings = (f"decoding={args.decoding or sequencer.default_decoding} beam_size={beam_size} "
                f"top_k={args.top_k} checkpoint={args.checkpoint or DEFAULT_CHECKPOINT.name}")
    written = write_psms(args.output, psms, sequencer.vocabulary, spectra_file=spectra_path(args.spectra),
                         software=f"peptide_losses {__version__}",
                         description=f"peptide-losses sequence {args.spectra}: {settings}")
    seconds = time.perf_counter() - started
    print(f"peptide-losses sequence: {len(spectra)} spectra in {seconds:.1f} s "
          f"({1000 * seconds / len(spectra):.1f} s per 1,000); {len(spectra) - missing} with a PSM, {missing} without "
          f"(no peak after preprocessing, a precursor heavier than {sequencer.max_length} tokens can weigh, or no "
          f"candidate finished within {sequencer.max_length} tokens); {written} PSMs -> {args.output}",
          file=sys.stderr)
    return 0
