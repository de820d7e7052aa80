"""The judge's cost against the scorer's on one beam (issue 32's speed goal: features + judge within
2x of the scorer at B=1,024 x K=40).

    python -m benchmarks.sequencing.judge_speed --device cuda      # one GPU, under a minute
    python -m benchmarks.sequencing.judge_speed --smoke            # CPU, seconds (CI's test)

One guided beam of the shipped checkpoint over ``--batch`` spectra of the shipped real sets at
beam size ``--beam``; then, timed in turns (device synchronised around each call; median of
``--repeats``):

- **scoring**: :func:`~peptide_losses.train.decoding.candidate_evidence` (precursor ppm and spectrum
  scores), the evidence :func:`~peptide_losses.decoding.rerank` weighs;
- **features + judge**: :meth:`Sequencer.features <peptide_losses.sequencing.Sequencer.features>`
  and :meth:`Judge.probability <peptide_losses.judge.Judge.probability>`, as shipped;
- the same with the fragment features by the plain-PyTorch reference (what shipped before the kernel);
- the fragment features alone, by the reference and by the kernel at each launch setting of
  ``--sweep`` (peaks per tile x warps; the shipped one is :data:`~peptide_losses.kernels.features.BLOCK_N`,
  :data:`~peptide_losses.kernels.features.NUM_WARPS`).

The kernel's features must equal the reference's on this beam (the intensity fraction to float32
rounding: its sums run in another order).

Writes ``results/<device>/judge_speed.{md,json}``; ``--smoke`` writes nowhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import statistics
import time
from pathlib import Path

import torch

from peptide_losses.features import TOLERANCE, Beam, fragment_evidence
from peptide_losses.sequencing import load_sequencer
from peptide_losses.spectra import Preprocessing
from peptide_losses.train.decoding import beam_candidates, candidate_evidence

from ..environment import RESULTS_ROOT, describe, save_results, slug
from .throughput import real_spectra, synchronize


def timed(function, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def main(argv=None) -> Path | str:
    """The written report's path; with ``--smoke`` the report itself (nothing written)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--beam", type=int, default=40)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--sweep", type=lambda text: tuple(int(v) for v in text.split("x")), nargs="+",
                   default=[(32, 1), (32, 2), (64, 1), (64, 2), (64, 4), (128, 2), (128, 4)], metavar="PEAKSxWARPS",
                   help="fragment kernel launch settings to time on a GPU (default: %(default)s)")
    p.add_argument("--smoke", action="store_true", help="CPU, 4 spectra, beam 4, 1 repeat; writes nowhere")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.batch, args.beam, args.repeats = "cpu", 4, 4, 1
    device = torch.device(args.device)
    sequencer = load_sequencer(None, device)
    settings = sequencer.config.decoding
    batch = sequencer.batch(real_spectra(args.batch, sequencer.vocabulary, Preprocessing()))
    found = beam_candidates(sequencer.model, batch, args.beam, settings.guide_weight, None)

    def scoring():
        return candidate_evidence(found.tokens, batch, settings, sequencer.config.losses.precursor.isotope_errors,
                                  sequencer.backend)

    beam = Beam(found.tokens, found.log_prob, found.finished, *scoring())

    def judge():
        return sequencer.judge.probability(sequencer.features(batch, beam), beam.finished)

    reference_sequencer = dataclasses.replace(sequencer, backend="reference")

    def judge_reference():
        return sequencer.judge.probability(reference_sequencer.features(batch, beam), beam.finished)

    vocabulary = sequencer.vocabulary
    inputs = (beam.tokens, vocabulary.mass_tensor(device=device), vocabulary.start_only_mask(device=device), batch.mz,
              batch.intensity, batch.peak_mask)
    rows = {"scoring (ppm + spectrum scores)": scoring, "features + judge": judge,
            "features + judge, fragment features by the reference (before)": judge_reference,
            "fragment features alone, reference": lambda: fragment_evidence(*inputs, backend="reference")}
    kernel = {}
    if device.type == "cuda":
        from peptide_losses.kernels.features import fragment_evidence_forward

        for block_n, warps in args.sweep:
            name = f"fragment features alone, kernel, {block_n} peaks x {warps} warps"
            rows[name] = functools.partial(fragment_evidence_forward, *inputs, TOLERANCE, block_n, warps)
            kernel[name] = rows[name]()
    reference = fragment_evidence(*inputs, backend="reference")
    shipped = fragment_evidence(*inputs)
    same = [bool(torch.equal(out[..., 1:], reference[..., 1:])) and
            float((out[..., 0] - reference[..., 0]).abs().max()) <= 1e-6 for out in [shipped, *kernel.values()]]
    for function in rows.values():
        function()  # warm-up: kernel compilation, the allocator's first blocks
    seconds = {name: [] for name in rows}
    for _ in range(args.repeats):
        for name, function in rows.items():
            seconds[name].append(timed(function, device))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    scoring_ms = medians["scoring (ppm + spectrum scores)"]
    env = describe(device)
    results = {"environment": env, "device": args.device, "batch": args.batch, "beam": args.beam,
               "repeats": args.repeats, "same_features": all(same),
               "median_s": medians, "seconds": seconds}
    lines = [f"# The judge against the scorer ({env['device']})", "",
             f"{env['date']}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}, triton "
             f"{env['triton']}. One guided beam of the shipped checkpoint, {args.batch} real spectra x K={args.beam} "
             f"candidates; medians of {args.repeats} timings taken in turns. Command: "
             f"`python -m benchmarks.sequencing.judge_speed --device {args.device}`.", "",
             "| stage | ms (median) | / scoring |", "|---|---:|---:|"]
    lines += [f"| {name} | {1000 * value:.2f} | {value / scoring_ms:.2f} |" for name, value in medians.items()]
    lines += ["", f"Fragment features of the shipped path and of every kernel setting the same as the reference's "
                  f"(the intensity fraction within 1e-6): {results['same_features']}.", ""]
    markdown = "\n".join(lines)
    if args.smoke:
        return markdown
    folder = Path(args.results) / ("cpu" if device.type == "cpu" else slug(env["device"]))
    return save_results(folder, "judge_speed", results, markdown)


if __name__ == "__main__":
    print(main())
