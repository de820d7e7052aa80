"""First timing of the fused precursor mass loss (issue 3): fwd+bwd at B=4096, L=32, V=28.

Compares the Triton kernels with the eager reference and torch.compile(reference):
median of CUDA-event timings (``triton.testing.do_bench``, L2 flushed before each
call), rotating among input sets that together exceed the L2. Also times the
kernels alone over a sweep of launch configurations, the same fwd+bwd replayed
from a CUDA graph (device time without Python launch gaps), and checks that two
runs are bitwise equal. The systematic benchmark is ``benchmarks/measure.py``.

Run: ``python -m benchmarks.precursor_first_timing`` (needs a GPU).
"""

from __future__ import annotations

import cProfile
import itertools
import os
import pstats
import time
from dataclasses import replace

import torch
import triton
from triton.testing import do_bench

from peptide_losses import reference
from peptide_losses.kernels.common import row_config
from peptide_losses.kernels.precursor import precursor_backward, precursor_forward
from peptide_losses.precursor_op import precursor_mass_loss_fused
from peptide_losses.synthetic import make_batch

from .timing import capture_graph

BATCH, LENGTH, VOCAB = 4096, 32, 28
INPUT_SETS = 8
OPTIONS = dict(scale=100.0, isotope_errors=(0, 1), reduction="mean")


def input_sets(dtype):
    first = make_batch(BATCH, LENGTH, 1, vocab_size=VOCAB, dtype=dtype, device="cuda", seed=0)
    return [replace(first, logits=first.logits.clone().requires_grad_(True)) for _ in range(INPUT_SETS)]


def triton_loss(b):
    return precursor_mass_loss_fused(b.logits, b.masses, None, b.mask, b.precursor_mz, b.charge, **OPTIONS)


def eager_loss(logits, masses, mask, precursor_mz, charge):
    masses_per_position = reference.expected_residue_masses(logits, masses)
    return reference.precursor_mass_loss(masses_per_position, mask, precursor_mz, charge, **OPTIONS)


def fwd_bwd(loss_fn, sets):
    """A call of fwd+bwd on the next input set (rotating)."""
    cycle = itertools.cycle(sets)

    def step():
        b = next(cycle)
        return torch.autograd.grad(loss_fn(b), b.logits)[0]

    return step


def median_ms(fn):
    return do_bench(fn, warmup=50, rep=300, return_mode="median")


def graph_ms(step, calls):
    """Device time per call of ``step``: one CUDA graph of ``calls`` calls (one per input set), replayed."""
    def every_set():
        for _ in range(calls):
            step()

    graph, _ = capture_graph(every_set, warmup=1)
    return do_bench(graph.replay, warmup=20, rep=200, return_mode="median") / calls


def host_us(step, calls=200):
    """Host time to issue one call (no synchronisation inside): above the device time, the host bounds."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        step()
    elapsed = time.perf_counter() - start
    torch.cuda.synchronize()
    return elapsed / calls * 1e6


def profile_host(step, calls=50):
    """Where the host time of a call goes (cProfile, top entries by own time)."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        step()
    profiler.disable()
    torch.cuda.synchronize()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(8)


def kernels_only(sets, config):
    """Forward + backward launches alone (no autograd, no reduction), given launch config."""
    cycle = itertools.cycle(sets)
    grad_loss = torch.full((BATCH,), 1.0 / BATCH, device="cuda")

    def step():
        b = next(cycle)
        out = precursor_forward(b.logits, b.masses, b.mask, b.precursor_mz, b.charge, scale=OPTIONS["scale"],
                                isotope_errors=OPTIONS["isotope_errors"], config=config)
        return precursor_backward(b.logits, b.masses, b.mask, grad_loss, out[1], config=config)

    return step


def bitwise_repeatable(sets):
    b = sets[0]
    runs = []
    for _ in range(2):
        loss = triton_loss(b)
        runs.append((loss.detach(), torch.autograd.grad(loss, b.logits)[0]))
    return torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


def max_relative_error(sets):
    b = sets[0]
    loss = triton_loss(b)
    grad = torch.autograd.grad(loss, b.logits)[0].float()
    expected = eager_loss(b.logits, b.masses, b.mask, b.precursor_mz, b.charge)
    expected_grad = torch.autograd.grad(expected, b.logits)[0].float()
    return ((loss - expected).abs() / expected.abs()).item(), ((grad - expected_grad).norm() / expected_grad.norm()).item()


def main() -> None:
    device = torch.cuda.get_device_name()
    print(f"device: {device}; torch {torch.__version__}; triton {triton.__version__}; "
          f"B={BATCH} L={LENGTH} V={VOCAB}; options {OPTIONS}; {INPUT_SETS} rotating input sets; "
          f"CUDA_LAUNCH_BLOCKING={os.environ.get('CUDA_LAUNCH_BLOCKING')!r}")
    compiled = torch.compile(eager_loss, dynamic=False)
    eager = lambda b: eager_loss(b.logits, b.masses, b.mask, b.precursor_mz, b.charge)  # noqa: E731
    compiled_call = lambda b: compiled(b.logits, b.masses, b.mask, b.precursor_mz, b.charge)  # noqa: E731
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        sets = input_sets(dtype)
        name = str(dtype).removeprefix("torch.")
        value_err, grad_err = max_relative_error(sets)
        print(f"[{name}] vs eager: value rel err {value_err:.2e}, grad rel norm err {grad_err:.2e}; "
              f"bitwise repeatable: {bitwise_repeatable(sets)}")
        size = sets[0].logits.element_size()
        default = row_config(BATCH, LENGTH, VOCAB, element_size=size)
        sweep = []
        for tile, warps in itertools.product((1024, 2048, 4096), (1, 2, 4, 8)):
            config = row_config(BATCH, LENGTH, VOCAB, element_size=size, tile_elements=tile, num_warps=warps)
            sweep.append((graph_ms(kernels_only(sets, config), INPUT_SETS), tile, warps, config["SPECTRA"]))
        sweep.sort()
        print(f"[{name}] fwd + bwd kernels alone, CUDA graph, default {default}: "
              f"{graph_ms(kernels_only(sets, default), INPUT_SETS) * 1e3:.1f} us; fastest:")
        for ms, tile, warps, spectra in sweep[:5]:
            print(f"    {ms * 1e3:7.1f} us  tile_elements={tile} num_warps={warps} (SPECTRA={spectra})")
        print(f"    slowest: {sweep[-1][0] * 1e3:.1f} us  tile_elements={sweep[-1][1]} num_warps={sweep[-1][2]}")
        step = fwd_bwd(triton_loss, sets)
        small = torch.ones(16, device="cuda")
        print(f"[{name}] host issue time per call: triton fwd+bwd {host_us(step):.1f} us, kernels alone "
              f"{host_us(kernels_only(sets, default)):.1f} us, one tiny torch op {host_us(lambda: small + 1):.1f} us; "
              f"triton fwd+bwd CUDA graph replay {graph_ms(step, INPUT_SETS) * 1e3:.1f} us/call")
        if dtype == torch.float32:
            profile_host(step)
        for label, fn in (("triton", triton_loss), ("eager", eager), ("torch.compile", compiled_call)):
            rows.append((name, label, median_ms(fwd_bwd(fn, sets))))
            print(f"[{name}] {label} fwd+bwd do_bench median: {rows[-1][2]:.4f} ms")
    print("\nfwd+bwd, do_bench median (L2 flushed, host launch gaps included), ms:")
    for name, label, ms in rows:
        print(f"  {name:9s} {label:14s} {ms:8.4f}")


if __name__ == "__main__":
    main()
