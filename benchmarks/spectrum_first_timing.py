"""First timing of the fused spectrum matching loss (issue 4): fwd+bwd against eager and torch.compile.

Cases: B=1024, L=32, V=28, N=512 and B=1024, L=64, V=28, N=2048, b/y ions,
charges 1-2, observed direction, Da, mean (``make_batch``: ragged peptides and
peak lists). Per case: agreement with the eager reference and bitwise
repeatability; medians of CUDA-event timings (``do_bench``, L2 flushed before
each call) rotating among input sets; the same fwd+bwd replayed from a CUDA
graph (device time without Python launch gaps) and its host issue time; the
kernels alone (no autograd, no operator dispatch, no reduction) over a sweep of
(BLOCK_N, num_warps); and the peak memory that fwd+bwd allocates beyond the
inputs and the gradient.

Run: ``python -m benchmarks.spectrum_first_timing`` (needs a GPU).
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import torch
import triton

from benchmarks.precursor_first_timing import fwd_bwd, graph_ms, host_us, median_ms, profile_host
from peptide_losses import reference
from peptide_losses.kernels.spectrum import launch_config, spectrum_backward, spectrum_forward
from peptide_losses.spectrum_op import spectrum_matching_loss_fused
from peptide_losses.synthetic import make_batch

CASES = [dict(batch=1024, length=32, vocab=28, n_peaks=512), dict(batch=1024, length=64, vocab=28, n_peaks=2048)]
INPUT_SETS = 8
OPTIONS = dict(ion_types=("b", "y"), charges=(1, 2), direction="observed", distance="da", distance_scale=None,
               intensity_power=1.0, reduction="mean")
KERNEL_OPTIONS = {k: v for k, v in OPTIONS.items() if k != "reduction"}


def input_sets(case, dtype=torch.float32):
    first = make_batch(case["batch"], case["length"], case["n_peaks"], vocab_size=case["vocab"], dtype=dtype,
                       device="cuda", seed=0)
    return [replace(first, logits=first.logits.clone().requires_grad_(True)) for _ in range(INPUT_SETS)]


def triton_loss(b):
    return spectrum_matching_loss_fused(b.logits, b.masses, None, b.mask, b.mz, b.intensity, b.peak_mask, **OPTIONS)


def eager_loss(logits, masses, mask, mz, intensity, peak_mask):
    masses_per_position = reference.expected_residue_masses(logits, masses)
    return reference.spectrum_matching_loss(masses_per_position, mask, mz, intensity, peak_mask, **OPTIONS)


def kernels_only(sets, config, mode="fwd+bwd"):
    """Launches alone, no autograd, no reduction; ``config`` is the forward's (the backward takes its
    default). mode: "fwd" (no gradient part), "fwd+grad"
    (the forward computing dloss/dm too), "bwd" (backward alone) or "fwd+bwd"."""
    cycle = itertools.cycle(sets)
    grad_loss = torch.full((sets[0].mask.shape[0],), 1.0, device="cuda")

    def forward(b, need_grad):
        return spectrum_forward(b.logits, b.masses, b.mask, b.mz, b.intensity, b.peak_mask, need_grad=need_grad,
                                config=config, **KERNEL_OPTIONS)[1]

    saved = {id(b): forward(b, True) for b in sets} if mode == "bwd" else {}

    def step():
        b = next(cycle)
        if mode in ("fwd", "fwd+grad"):
            return forward(b, mode == "fwd+grad")
        grad_mass = saved[id(b)] if mode == "bwd" else forward(b, True)
        return spectrum_backward(b.logits, b.masses, b.mask, grad_loss, grad_mass)

    return step


def agreement(b):
    """Relative errors of the value and of the gradient (norm) against eager, and bitwise repeatability."""
    runs = []
    for _ in range(2):
        loss = triton_loss(b)
        runs.append((loss.detach(), torch.autograd.grad(loss, b.logits)[0]))
    repeatable = torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    expected = eager_loss(b.logits, b.masses, b.mask, b.mz, b.intensity, b.peak_mask)
    expected_grad = torch.autograd.grad(expected, b.logits)[0]
    loss, grad = runs[0]
    return ((loss - expected).abs() / expected.abs()).item(), \
        ((grad - expected_grad).norm() / expected_grad.norm()).item(), repeatable


def extra_memory_mib(b):
    """Peak bytes of one fwd+bwd beyond the inputs and the gradient it returns, MiB."""
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    grad = torch.autograd.grad(triton_loss(b), b.logits)[0]
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - baseline
    return (peak - grad.numel() * grad.element_size()) / 2**20


def main() -> None:
    print(f"device: {torch.cuda.get_device_name()}; torch {torch.__version__}; triton {triton.__version__}; "
          f"options {OPTIONS}; {INPUT_SETS} rotating input sets")
    compiled = torch.compile(eager_loss, dynamic=False)
    for case in CASES:
        sets = input_sets(case)
        name = " ".join(f"{k[0].upper()}={v}" for k, v in case.items())
        value_err, grad_err, repeatable = agreement(sets[0])
        print(f"[{name}] vs eager: value rel err {value_err:.2e}, grad rel norm err {grad_err:.2e}; "
              f"bitwise repeatable: {repeatable}; extra memory fwd+bwd {extra_memory_mib(sets[0]):.2f} MiB")
        default = launch_config(case["length"], case["vocab"])
        sweep = []
        for block_n, warps in ((128, 2), (128, 4), (256, 2), (256, 4), (256, 8), (512, 4), (512, 8)):
            config = launch_config(case["length"], case["vocab"], block_n=block_n, num_warps=warps)
            sweep.append((graph_ms(kernels_only(sets, config), INPUT_SETS), block_n, warps))
        sweep.sort()
        parts = {mode: graph_ms(kernels_only(sets, default, mode), INPUT_SETS) * 1e3
                 for mode in ("fwd", "fwd+grad", "bwd")}
        print(f"[{name}] kernels alone, CUDA graph, default {default}: "
              + ", ".join(f"{label} {us:.1f} us" for label, us in parts.items()))
        print(f"[{name}] fwd + bwd kernels alone, default: CUDA graph "
              f"{graph_ms(kernels_only(sets, default), INPUT_SETS) * 1e3:.1f} us/call, host issue time "
              f"{host_us(kernels_only(sets, default)):.1f} us/call, do_bench median "
              f"{median_ms(kernels_only(sets, default)) * 1e3:.1f} us; fastest in the graph:")
        for ms, block_n, warps in sweep[:5]:
            print(f"    {ms * 1e3:7.1f} us  BLOCK_N={block_n} num_warps={warps}")
        print(f"    slowest: {sweep[-1][0] * 1e3:.1f} us  BLOCK_N={sweep[-1][1]} num_warps={sweep[-1][2]}")
        step = fwd_bwd(triton_loss, sets)
        small = torch.ones(16, device="cuda")
        print(f"[{name}] triton fwd+bwd (public path): host issue time {host_us(step):.1f} us/call "
              f"(one tiny torch op: {host_us(lambda: small + 1):.1f} us); "
              f"CUDA graph replay {graph_ms(step, INPUT_SETS) * 1e3:.1f} us/call")
        if case is CASES[0]:
            print("host profile, kernels alone:")
            profile_host(kernels_only(sets, default))
            print("host profile, public path:")
            profile_host(step)
        eager = lambda b: eager_loss(b.logits, b.masses, b.mask, b.mz, b.intensity, b.peak_mask)  # noqa: E731
        compiled_call = lambda b: compiled(b.logits, b.masses, b.mask, b.mz, b.intensity, b.peak_mask)  # noqa: E731
        contenders = (("triton", triton_loss), ("eager", eager), ("torch.compile", compiled_call))
        for label, fn in contenders if case is CASES[0] else contenders[:2]:  # compile: first case only
            print(f"[{name}] {label} fwd+bwd do_bench median: {median_ms(fwd_bwd(fn, sets)):.4f} ms")
        del sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
