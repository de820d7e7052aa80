"""Loss weights over the run: the staged curriculum and optional adaptive balancing."""

from __future__ import annotations

import math

from .config import BalancingConfig, OptimizerConfig, ScheduleConfig
from .objective import LOSS_NAMES, shares


def stage_weights(schedule: ScheduleConfig, stage: int) -> dict[str, float]:
    """Weights of stage ``stage`` (0-based) of the schedule."""
    return {"ce": schedule.ce_weight, "spectrum": schedule.spectrum_weights[stage],
            "precursor": schedule.precursor_weights[stage]}


def staged_weights(schedule: ScheduleConfig, step: int, total_steps: int) -> dict[str, float]:
    """Weights at ``step`` (0-based): stage k of n covers steps [k T/n, (k+1) T/n)."""
    stages = len(schedule.spectrum_weights)
    return stage_weights(schedule, min(step * stages // max(total_steps, 1), stages - 1))


def learning_rate(optimizer: OptimizerConfig, step: int, total_steps: int) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_fraction * lr``."""
    if step < optimizer.warmup_steps:
        return optimizer.lr * (step + 1) / optimizer.warmup_steps
    progress = (step - optimizer.warmup_steps) / max(total_steps - optimizer.warmup_steps, 1)
    floor = optimizer.min_lr_fraction
    return optimizer.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


class Balancer:
    """Keeps each loss's share of the total inside its target band.

    Each mass loss's staged weight is multiplied by a factor. At every update
    (the trainer's logging steps, from the loss means since the last one) the factor of a mass loss whose smoothed share is below its band grows by
    ``1 + rate``, above it shrinks by the same; a mass loss inside its band
    moves so as to bring CE's share into the CE band (CE's own weight stays
    fixed). Factors stay within ``[1/max_factor, max_factor]``; a loss with
    staged weight 0 is left alone. Disabled, the factors stay 1 and the shares
    are still tracked for logging.
    """

    def __init__(self, config: BalancingConfig) -> None:
        self.config = config
        self.factors = {"spectrum": 1.0, "precursor": 1.0}
        self.smoothed: dict[str, float] | None = None

    def weights(self, staged: dict[str, float]) -> dict[str, float]:
        return {name: staged[name] * self.factors.get(name, 1.0) for name in LOSS_NAMES}

    def update(self, values: dict[str, float], weights: dict[str, float]) -> dict[str, float]:
        """Record loss values under ``weights``; return their shares."""
        current = shares(values, weights)
        if self.smoothed is None:
            self.smoothed = dict(current)
        else:
            a = self.config.smoothing
            self.smoothed = {k: a * self.smoothed[k] + (1 - a) * current[k] for k in current}
        if self.config.enabled:
            ce_low, ce_high = self.config.ce_band
            ce_direction = -1 if self.smoothed["ce"] < ce_low else 1 if self.smoothed["ce"] > ce_high else 0
            step = 1 + self.config.rate
            for name in self.factors:
                if weights[name] == 0:
                    continue
                low, high = getattr(self.config, f"{name}_band")
                share = self.smoothed[name]
                direction = 1 if share < low else -1 if share > high else ce_direction
                factor = self.factors[name] * step**direction
                self.factors[name] = min(max(factor, 1 / self.config.max_factor), self.config.max_factor)
        return current

    def state_dict(self) -> dict:
        return {"factors": dict(self.factors), "smoothed": None if self.smoothed is None else dict(self.smoothed)}

    def load_state_dict(self, state: dict) -> None:
        self.factors = dict(state["factors"])
        self.smoothed = None if state["smoothed"] is None else dict(state["smoothed"])
