"""The losses inside a training step: eager, ``torch.compile(fullgraph=True)`` and a CUDA-graph replay.

The step is :mod:`benchmarks.support.step_variants`' (a small MLP to logits, both
mass losses as modules, SGD), which ``tests/test_integration.py`` checks
variant against variant. ``python -m benchmarks.kernels.trainer_integration`` prints (on
a GPU) the largest differences of loss, gradients and updated weights between
the variants and the time of one step of each.
"""

from __future__ import annotations

import json

import torch

from benchmarks.support.step_variants import GPU_SIZES, StepVariant, make_inputs

from ..environment import describe
from .timing import TimingSettings, time_step

#: (backend, autocast bf16) rows of the GPU report.
VARIANTS = (("auto", False), ("auto", True), ("reference", False))


def main() -> None:
    device = torch.device("cuda")
    settings = TimingSettings(warmup=5, min_iters=20, max_iters=200, target_seconds=0.5)
    print(json.dumps(dict(environment=describe(device), sizes=GPU_SIZES)), flush=True)
    first = make_inputs(**GPU_SIZES, device=device, seed=0)
    second = make_inputs(**GPU_SIZES, device=device, seed=1)
    for backend, autocast in VARIANTS:
        trainers = {v: StepVariant(v, backend, GPU_SIZES["length"], device, autocast=autocast)
                    for v in ("eager", "compiled", "graph")}
        for trainer in trainers.values():
            trainer.step(first)  # compiles / captures, so that `second` is new to every variant
        results = {v: t.step(second) for v, t in trainers.items()}
        eager = results["eager"]
        row = dict(backend=backend, autocast=autocast,
                   eager_max_abs=dict(loss=eager.loss.abs().item(),
                                      grads=max(g.abs().max().item() for g in eager.grads)),
                   compiled_vs_eager=results["compiled"].max_abs_difference(eager),
                   graph_vs_eager=results["graph"].max_abs_difference(eager),
                   bitwise_repeatable={v: t.step(second).equals(results[v]) for v, t in trainers.items()},
                   step_ms={v: round(time_step(lambda i: second, t.run, device, settings).median_ms, 4)
                            for v, t in trainers.items()})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
