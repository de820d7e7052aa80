"""The recommended mass-loss weights and ramp, one place for every integration.

:data:`RECOMMENDED` is the evidence-based recommendation of the README's
"Do the mass losses help?" section: the integrations (e.g.
:mod:`peptide_losses.integrations.casanovo`) take their defaults from it, and
every one of them stays configurable.
"""

from __future__ import annotations

from dataclasses import dataclass

from .reference import AUTO_DISTANCE_SCALE


@dataclass(frozen=True)
class Recommendation:
    """Weights of the two mass losses next to a model's cross-entropy (weight 1).

    Attributes:
        spectrum_weight: weight of the spectrum matching loss once ramped up.
        precursor_weight: weight of the precursor mass loss once ramped up.
        ramp_start: fraction of training (0..1) before which both weights are 0.
        ramp_end: fraction of training from which both weights are at full
            value; linear in between.
        distance_scale: the spectrum loss's ``distance_scale`` in Da.
    """

    spectrum_weight: float
    precursor_weight: float
    ramp_start: float
    ramp_end: float
    distance_scale: float

    def __post_init__(self) -> None:
        for name in ("spectrum_weight", "precursor_weight", "distance_scale"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ramp_start <= self.ramp_end <= 1:
            raise ValueError(
                f"need 0 <= ramp_start <= ramp_end <= 1 (fractions of training), got "
                f"ramp_start={self.ramp_start}, ramp_end={self.ramp_end}"
            )

    def ramp(self, progress: float) -> float:
        """Factor 0..1 of the full weights at ``progress`` (fraction of training done)."""
        if progress >= self.ramp_end:
            return 1.0
        if progress <= self.ramp_start:
            return 0.0
        return (progress - self.ramp_start) / (self.ramp_end - self.ramp_start)


#: The evidence (README, "Do the mass losses help?"; benchmarks/results/nvidia-h200/):
#: on the H200 GPU preset, the seed's value weights (spectrum 0.05-0.15, precursor
#: 0.01-0.10, ramped in from 10 % of the run) collapse the model, with or without
#: adaptive balancing (easy token accuracy 0.06-0.15 against 0.40 for CE alone at
#: step 800, 0.08 against 0.89 at step 2,500); each loss rescaled to 0.1 of CE's
#: gradient norm at the logits from 30 % of the run was indistinguishable from CE
#: alone over 3 seeds. No configuration measured so far improves the model, so the
#: recommended weights are 0: the losses are computed and logged, and the
#: precursor is used at decoding (precursor-aware beam search), which helped in
#: every measurement. The ramp is kept for users who turn the losses on anyway.
#: distance_scale: the package default (``reference.AUTO_DISTANCE_SCALE``, 0.005 Da),
#: the best true-vs-decoy separation on real spectra (``python -m benchmarks.training.discrimination``).
RECOMMENDED = Recommendation(
    spectrum_weight=0.0,
    precursor_weight=0.0,
    ramp_start=0.3,
    ramp_end=0.5,
    distance_scale=AUTO_DISTANCE_SCALE["da"],
)
