"""Launch configurations of the fused kernels, timed alone: where the kernels' defaults come from.

    python -m benchmarks.kernels.tune                 # GPU: the sweep centres, fp32 and bf16
    python -m benchmarks.kernels.tune --device cpu    # tiny sizes, interpreted kernels, host clock (checks the pipeline)

For each case, every launch configuration of a sweep (spectrum: peaks per tile
``BLOCK_N`` x warps; precursor: tile elements x warps) runs the forward
launcher (with the mass gradient) and the backward launcher alone: no
autograd, no reduction, no argument checks. On CUDA the two launches are
captured in a CUDA graph and each replay timed with the L2 flushed before it:
device time per call, as ``benchmarks.kernels.run``'s ``fwd+bwd graph`` mode. The table
lists the configurations fastest first, the default marked. The defaults
(``kernels.spectrum.BLOCK_N`` / ``NUM_WARPS``, ``kernels.common.TILE_ELEMENTS``)
were picked this way on the H100 (``benchmarks/NOTES.md``).
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import replace
from typing import Callable

import torch

from benchmarks.support.step_variants import capture_graph
from benchmarks.support.synthetic import LossBatch, make_batch

from . import grid
from .run import interpreter_if_cpu
from .timing import L2Flush, Timing, TimingSettings, settings_for, time_step

#: (BLOCK_N, num_warps) of the spectrum forward.
SPECTRUM_SWEEP = ((128, 2), (128, 4), (256, 2), (256, 4), (256, 8), (512, 4), (512, 8))
#: (tile elements, num_warps) of the precursor kernels.
PRECURSOR_SWEEP = tuple(itertools.product((1024, 2048, 4096), (1, 2, 4, 8)))
#: The spectrum options of the recorded benchmark runs.
SPECTRUM_OPTIONS = dict(direction="observed", distance="da", distance_scale=None, intensity_power=1.0)


def configs(case: grid.Case) -> list[tuple[str, dict]]:
    """(label, launch configuration) of the sweep for ``case``, the default first."""
    # Kernel modules are imported when first needed: on the CPU, under interpreter_if_cpu.
    from peptide_losses.kernels.common import row_config
    from peptide_losses.kernels.spectrum import launch_config

    size = case.torch_dtype.itemsize
    if case.loss == "spectrum":
        default = launch_config(case.length, case.vocab, element_size=size)
        sweep = [(f"BLOCK_N={n} num_warps={w}", launch_config(case.length, case.vocab, n, w, element_size=size))
                 for n, w in SPECTRUM_SWEEP]
    else:
        default = row_config(case.batch, case.length, case.vocab, element_size=size)
        sweep = [(f"tile_elements={t} num_warps={w}",
                  row_config(case.batch, case.length, case.vocab, element_size=size, tile_elements=t, num_warps=w))
                 for t, w in PRECURSOR_SWEEP]
    unique = [("default", default)]
    for label, config in sweep:  # small cases clamp several settings to one configuration
        if all(config != seen for _, seen in unique):
            unique.append((label, config))
    return unique


def kernels_step(case: grid.Case, batch: LossBatch, config: dict) -> Callable[[], torch.Tensor]:
    """One call of the forward and backward launchers on ``batch`` with ``config`` (the backward of the
    spectrum loss takes its own default)."""
    from peptide_losses.kernels.precursor import precursor_backward, precursor_forward
    from peptide_losses.kernels.spectrum import spectrum_backward, spectrum_forward

    grad_loss = torch.ones(case.batch, device=batch.logits.device)
    if case.loss == "spectrum":
        def step():
            forward = spectrum_forward(batch.logits, batch.masses, batch.mask, batch.mz, batch.intensity,
                                       batch.peak_mask, ion_types=case.ion_types, charges=case.charges,
                                       need_grad=True, config=config, **SPECTRUM_OPTIONS)
            return spectrum_backward(batch.logits, batch.masses, batch.mask, grad_loss, forward)
    else:
        def step():
            forward = precursor_forward(batch.logits, batch.masses, batch.mask, batch.precursor_mz, batch.charge,
                                        scale=100.0, isotope_errors=(0,), config=config)
            return precursor_backward(batch.logits, batch.masses, batch.mask, grad_loss, forward, config=config)
    return step


def time_kernels(step: Callable[[], torch.Tensor], device: torch.device, settings: TimingSettings) -> Timing:
    """Device time of a CUDA-graph replay of ``step`` (L2 flushed before each); host clock on the CPU."""
    if device.type != "cuda":
        return time_step(lambda i: None, lambda _: step(), device, settings)
    graph, _ = capture_graph(step)
    return time_step(lambda i: graph, lambda g: g.replay(), device, settings, flush=L2Flush(device))


def sweep(case: grid.Case, device: torch.device, settings: TimingSettings) -> list[tuple[str, Timing]]:
    """(label, timing) of every configuration of ``case``, fastest first."""
    batch = make_batch(case.batch, case.length, case.n_peaks, vocab_size=case.vocab, dtype=case.torch_dtype,
                       device=device, seed=0)
    rows = [(label, time_kernels(kernels_step(case, batch, config), device, settings))
            for label, config in configs(case)]
    return sorted(rows, key=lambda row: row[1].median_ms)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=torch.device,
                        default=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    parser.add_argument("--loss", nargs="+", default=list(grid.LOSSES), choices=grid.LOSSES)
    parser.add_argument("--dtype", nargs="+", default=list(grid.DTYPES), choices=list(grid.DTYPES))
    args = parser.parse_args(argv)
    centers = grid.CENTERS if args.device.type == "cuda" else grid.SMOKE_CENTERS
    with interpreter_if_cpu(args.device):
        for loss, dtype in itertools.product(args.loss, args.dtype):
            case = replace(centers[loss], dtype=dtype)
            print(f"## {case.label()} (forward + backward launchers, ms per call)")
            for label, timing in sweep(case, args.device, settings_for(args.device)):
                print(f"  {timing.median_ms:9.4f}  (p20 {timing.p20_ms:.4f}, p80 {timing.p80_ms:.4f})  {label}")


if __name__ == "__main__":
    main()
