"""How big is each loss next to the others? Catch a mis-scaled loss before a long run.

For a model and a batch, :func:`diagnose` evaluates CE, the spectrum loss and
the precursor loss once, then shows each one's weight, weighted value and share
of the total at the current step and at every stage of the schedule: the
"precursor is 98 % of the loss" analysis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..spectra import SpectrumBatch
from .config import TrainConfig
from .models import run_model
from .objective import LOSS_NAMES, Objective, shares
from .schedule import Balancer, stage_weights, staged_weights

#: A mass loss above this share of the total is warned about: it outweighs CE, whose gradient
#: teaches the sequence (the README's destructive weights put the precursor at ~89 %).
DOMINANT_SHARE = 0.5


@dataclass
class Diagnosis:
    """Loss values of one batch and their weights / shares at the current step and per stage."""

    step: int
    values: dict[str, float]
    weights: dict[str, float]
    shares: dict[str, float]
    stages: list[tuple[dict[str, float], dict[str, float]]]

    def warnings(self) -> list[str]:
        out = []
        for k, (weights, stage_shares) in enumerate([(self.weights, self.shares), *self.stages]):
            where = "now" if k == 0 else f"in stage {k}"
            for name in LOSS_NAMES:
                if name != "ce" and stage_shares[name] > DOMINANT_SHARE:
                    out.append(f"{name} would be {stage_shares[name]:.0%} of the total loss {where} "
                               f"(weight {weights[name]:g}): lower its weight or enable balancing")
        return out

    def format(self) -> str:
        lines = [f"losses at step {self.step} on one batch:",
                 f"  {'loss':<10} {'value':>12} {'weight':>8} {'weighted':>12} {'share':>7}"]
        for name in LOSS_NAMES:
            v, w = self.values[name], self.weights[name]
            lines.append(f"  {name:<10} {v:>12.5g} {w:>8.4g} {v * w:>12.5g} {self.shares[name]:>7.1%}")
        lines.append(f"  {'total':<10} {'':>12} {'':>8} {sum(self.values[n] * self.weights[n] for n in LOSS_NAMES):>12.5g}")
        lines.append("shares per stage of the schedule (same loss values):")
        lines.append("  stage " + " ".join(f"{n + ' w':>12} {n + ' %':>12}" for n in LOSS_NAMES))
        for k, (weights, stage_shares) in enumerate(self.stages, start=1):
            lines.append(f"  {k:>5} " + " ".join(f"{weights[n]:>12.4g} {stage_shares[n]:>12.1%}" for n in LOSS_NAMES))
        lines += [f"WARNING: {w}" for w in self.warnings()]
        return "\n".join(lines)


@torch.no_grad()
def diagnose(model, objective: Objective, batch: SpectrumBatch, config: TrainConfig, step: int = 0,
             balancer: Balancer | None = None) -> Diagnosis:
    """Evaluate the losses of ``model`` on ``batch`` and weigh them by the schedule.

    Args:
        step: the run's position (0-based) for the current weights.
        balancer: the run's balancer (its factors scale the staged weights), if any.
    """
    was_training = model.training
    model.eval()
    logits = run_model(model, batch)
    model.train(was_training)
    values = objective(logits, batch).detached()
    values = {name: values[name] for name in LOSS_NAMES}
    balancer = balancer or Balancer(config.balancing)
    weights = balancer.weights(staged_weights(config.schedule, step, config.steps))
    stages = []
    for k in range(len(config.schedule.spectrum_weights)):
        stage = balancer.weights(stage_weights(config.schedule, k))
        stages.append((stage, shares(values, stage)))
    return Diagnosis(step, values, weights, shares(values, weights), stages)
