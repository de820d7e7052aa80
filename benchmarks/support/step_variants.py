"""One training step with both losses, eager, ``torch.compile(fullgraph=True)`` or a CUDA-graph replay.

For the tests and benchmarks that check the losses inside a training loop
(``tests/test_integration.py``, ``benchmarks/kernels/trainer_integration.py``),
not for training: a small MLP predicts logits (B, L, V) from per-spectrum
features; the loss is both mass losses (the ``nn.Module`` forms, as a trainer
holds them), the update plain SGD.

Compiling: dynamo does not trace ``loss.backward()``, so the compiled part is
the forward (model + losses, one graph, ``fullgraph=True``); AOTAutograd
compiles the matching backward graph, which ``backward()`` then runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from peptide_losses import PrecursorMassLoss, SpectrumMatchingLoss, Vocabulary
from .synthetic import make_batch

FEATURES = 32
HIDDEN = 64
DISTANCE_SCALE = 0.05  # Da
PRECURSOR_WEIGHT = 0.01
LEARNING_RATE = 1e-3
#: A realistic batch of the losses' benchmark grid: the sizes of a step on the GPU.
GPU_SIZES = dict(batch=256, length=32, peaks=256)


def make_inputs(batch: int, length: int, peaks: int, *, device, seed: int) -> dict[str, torch.Tensor]:
    """Features (B, FEATURES) and the losses' data (``make_batch``'s), by name."""
    data = make_batch(batch, length, peaks, device=device, seed=seed)
    features = torch.randn(batch, FEATURES, generator=torch.Generator().manual_seed(seed))
    return dict(features=features.to(device), mask=data.mask, mz=data.mz, intensity=data.intensity,
                peak_mask=data.peak_mask, precursor_mz=data.precursor_mz, charge=data.charge)


def capture_graph(step: Callable[[], Any], warmup: int = 3) -> tuple["torch.cuda.CUDAGraph", Any]:
    """``step`` captured in a CUDA graph, after warm-up calls on a side stream
    (autograd and lazily initialised state must not first run inside a capture).

    Returns the graph and what the captured call returned: tensors that each
    replay overwrites in place.
    """
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        output = step()
    return graph, output


class MassLossModel(nn.Module):
    """An MLP to logits (B, L, V) and both mass losses; ``forward(inputs)`` is the scalar loss."""

    def __init__(self, vocabulary: Vocabulary, length: int, *, backend: str, seed: int = 0) -> None:
        super().__init__()
        self.length = length
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.GELU(),
                                       nn.Linear(HIDDEN, length * len(vocabulary)))
        self.spectrum = SpectrumMatchingLoss(vocabulary, distance_scale=DISTANCE_SCALE, backend=backend)
        self.precursor = PrecursorMassLoss(vocabulary, backend=backend)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.model(features).unflatten(-1, (self.length, -1))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(inputs["features"])
        spectrum = self.spectrum(logits, inputs["mz"], inputs["intensity"], inputs["mask"], inputs["peak_mask"])
        precursor = self.precursor(logits, inputs["precursor_mz"], inputs["charge"], inputs["mask"])
        return spectrum + PRECURSOR_WEIGHT * precursor


@dataclass
class StepResult:
    """Loss of one step, the gradients it left and the weights after the update."""

    loss: torch.Tensor
    grads: list[torch.Tensor]
    weights: list[torch.Tensor]

    def max_abs_difference(self, other: "StepResult") -> dict[str, float]:
        def most(a, b):
            return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))

        return dict(loss=most([self.loss], [other.loss]), grads=most(self.grads, other.grads),
                    weights=most(self.weights, other.weights))

    def equals(self, other: "StepResult") -> bool:
        """Bitwise equal."""
        pairs = zip([self.loss, *self.grads, *self.weights], [other.loss, *other.grads, *other.weights])
        return all(torch.equal(a, b) for a, b in pairs)


def train_step(forward: Callable, module: nn.Module, optimizer, inputs, *, autocast: bool = False) -> torch.Tensor:
    """Loss, backward, update; the gradients are overwritten, not accumulated (zero_grad(None) first)."""
    # cache_enabled=False: autocast's cache of cast weights must not outlive a CUDA-graph capture.
    with torch.autocast(inputs["features"].device.type, dtype=torch.bfloat16, enabled=autocast,
                        cache_enabled=False):
        loss = forward(inputs)
    loss.backward()
    optimizer.step()
    return loss.detach()


class StepVariant:
    """A :class:`MassLossModel`, its SGD optimizer and a step that is eager, compiled or a CUDA graph.

    ``step(inputs)`` returns the :class:`StepResult` of one step from the
    weights it was built with (they are restored first), so
    variants built alike give comparable results.
    """

    def __init__(self, variant: str, backend: str, length: int, device, *, autocast: bool = False) -> None:
        self.variant, self.autocast = variant, autocast
        self.module = MassLossModel(Vocabulary.default(), length, backend=backend).to(device)
        self.initial = [p.detach().clone() for p in self.module.parameters()]
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=LEARNING_RATE)
        self.forward = torch.compile(self.module, fullgraph=True, dynamic=False) if variant == "compiled" else self.module
        self.graph = self.static_inputs = self.static_loss = None

    def _restore(self, weights=None) -> None:
        with torch.no_grad():
            for p, weight in zip(self.module.parameters(), weights or self.initial):
                p.copy_(weight)

    def _eager_step(self, inputs) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        return train_step(self.forward, self.module, self.optimizer, inputs, autocast=self.autocast)

    def _capture(self, inputs) -> None:
        """Warm up on a side stream (Triton compiles, cuBLAS picks kernels), capture one step,
        and put back the weights the warm-up steps moved (capturing runs nothing)."""
        weights = [p.detach().clone() for p in self.module.parameters()]
        self.static_inputs = {k: v.clone() for k, v in inputs.items()}
        # zero_grad(set_to_none) inside the capture: the gradients are allocated in the graph's pool.
        self.graph, self.static_loss = capture_graph(lambda: self._eager_step(self.static_inputs))
        self._restore(weights)

    def run(self, inputs) -> torch.Tensor:
        """One step as a trainer runs it (the graph replays on the inputs it was last given)."""
        if self.variant != "graph":
            return self._eager_step(inputs)
        if self.graph is None:
            self._capture(inputs)
        self.graph.replay()
        return self.static_loss

    def step(self, inputs) -> StepResult:
        if self.variant == "graph" and self.graph is not None:
            for name, value in inputs.items():
                self.static_inputs[name].copy_(value)
        self._restore()
        loss = self.run(inputs)
        params = list(self.module.parameters())
        return StepResult(loss.clone(), [p.grad.clone() for p in params], [p.detach().clone() for p in params])
