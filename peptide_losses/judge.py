"""P(correct) of each candidate peptide from its :mod:`~peptide_losses.features`: a logistic
regression that chooses among a beam's candidates and is the confidence of the one it chooses.

Two kinds: a ``beam`` judge reads the package's own beams (:data:`FEATURE_SETS`, ``sequence``);
a ``psm`` judge reads another tool's PSMs with the tool's score (:data:`PSM_FEATURE_SETS`,
``rescore --judge``), fitted per tool by ``fit-judge --psms``.

A :class:`Judge` is fitted (:func:`fit_judge`) on labelled beams, candidates labelled 1 where the
peptide matches the annotation (Casanovo's mass-based match, I = L), and saved as JSON beside the
model checkpoint it judges (``<checkpoint stem>.judge.json``). The weights act on standardised
features, so their sizes compare.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .features import FEATURES, PSM_FEATURES
from .predicted_intensity import SOURCES as INTENSITY_SOURCES

#: The features a beam judge reads, by the predictor of its intensity feature (None: none; else a
#: key of :data:`peptide_losses.predicted_intensity.SOURCES`, the feature last).
FEATURE_SETS = {None: FEATURES, **{source: (*FEATURES, name) for source, name in INTENSITY_SOURCES.items()}}
#: The features a judge of another tool's PSMs reads, likewise.
PSM_FEATURE_SETS = {None: PSM_FEATURES, **{source: (*PSM_FEATURES, name) for source, name in INTENSITY_SOURCES.items()}}
_KNOWN = {names: ("psm" if sets is PSM_FEATURE_SETS else "beam", source)
          for sets in (FEATURE_SETS, PSM_FEATURE_SETS) for source, names in sets.items()}


@dataclass(frozen=True)
class Judge:
    """A fitted judge: per feature of ``features`` its ``mean`` and ``scale`` (standardisation) and
    ``weight``; the ``bias``; ``fitted_on`` says on what data."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weight: tuple[float, ...]
    bias: float
    fitted_on: str

    def __post_init__(self) -> None:
        if tuple(self.features) not in _KNOWN:
            raise ValueError(f"this judge reads features {list(self.features)}, this package computes "
                             f"{list(FEATURES)} for its beams and {list(PSM_FEATURES)} for another tool's PSMs, "
                             f"each with one of {list(INTENSITY_SOURCES.values())} last or none: refit it "
                             f"(peptide-losses fit-judge)")
        if not len(self.mean) == len(self.scale) == len(self.weight) == len(self.features):
            raise ValueError(f"a judge needs {len(self.features)} means, scales and weights")
        # A NaN weight would leave every candidate unchosen, an infinite bias make every one certain, a zero
        # scale divide by zero: each a silently wrong judge, refused here (and so at Judge.load).
        numbers = [(f"{field}[{i}] ({name})", field, value) for field in ("mean", "scale", "weight")
                   for i, (name, value) in enumerate(zip(self.features, getattr(self, field)))]
        for where, field, value in numbers + [("bias", "bias", self.bias)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (field == "scale" and value <= 0):
                raise ValueError(f"{where} is {value!r}: a judge's means, weights and bias are finite numbers, its "
                                 f"scales finite and > 0")

    @property
    def kind(self) -> str:
        """``"beam"`` (the package's own beams) or ``"psm"`` (another tool's PSMs, with its score)."""
        return _KNOWN[tuple(self.features)][0]

    @property
    def intensity_source(self) -> str | None:
        """The predictor of the intensity feature it was fitted on (``"ms2pip"``, ``"model"``), or None;
        where ms2pip is missing, an ms2pip judge reads the model's (:func:`~peptide_losses.predicted_intensity.predictor`)."""
        return _KNOWN[tuple(self.features)][1]

    def logit(self, features: torch.Tensor) -> torch.Tensor:
        """(..., F) features -> (...) log-odds of being correct."""
        x = features.double()
        mean, scale, weight = (torch.tensor(v, dtype=torch.float64, device=x.device)
                               for v in (self.mean, self.scale, self.weight))
        return ((x - mean) / scale) @ weight + self.bias

    def probability(self, features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, K) P(correct), NaN at candidates that are not ``valid`` (never chosen by
        :func:`peptide_losses.decoding.rerank`)."""
        return torch.where(valid, torch.sigmoid(self.logit(features)), torch.nan)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> "Judge":
        """The judge saved at ``path``; ValueError naming the file if it is none, or not of ``kind``."""
        try:
            record = json.loads(Path(path).read_text())
            judge = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in record.items()})
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path}: not a judge file: {err}") from None
        if kind is not None and judge.kind != kind:
            use = {"beam": "peptide-losses sequence --judge", "psm": "peptide-losses rescore --judge"}
            raise ValueError(f"{path}: a {judge.kind} judge (for {use[judge.kind]}), not a {kind} judge: fit one "
                             f"with peptide-losses fit-judge{' --psms TOOL.mztab' if kind == 'psm' else ''}")
        return judge


def judge_path(checkpoint: str | Path) -> Path:
    """Where the judge of a checkpoint lives: ``<stem>.judge.json`` beside it."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.judge.json")


def fit_judge(features: torch.Tensor, labels: torch.Tensor, *, names: tuple[str, ...] | None = None,
              l2: float = 1e-2, fitted_on: str = "") -> Judge:
    """A logistic regression of ``labels`` (R,) bool on ``features`` (R, F) named ``names``, one of
    :data:`FEATURE_SETS` or :data:`PSM_FEATURE_SETS` (None: a set without intensity feature, told by
    its width), L2-penalised by ``l2`` on the standardised weights; full-batch L-BFGS in float64 from
    zero weights, so the same data give the same judge."""
    x, y = features.double(), labels.double()
    widths = {len(FEATURES): FEATURES, len(PSM_FEATURES): PSM_FEATURES}
    if names is None and x.dim() == 2 and x.shape[1] in widths:
        names = widths[x.shape[1]]
    if names is not None and tuple(names) not in _KNOWN:
        raise ValueError(f"names {list(names)} are no judge's feature set (judge.FEATURE_SETS, PSM_FEATURE_SETS)")
    if x.dim() != 2 or names is None or x.shape[1] != len(names) or y.shape != x.shape[:1]:
        raise ValueError(f"features must be (R, F) with F = len(names) (without names: {sorted(widths)}) and labels "
                         f"(R,), got {tuple(x.shape)} and {tuple(y.shape)}")
    bad = (~x.isfinite()).nonzero()
    if len(bad):
        row, column = bad[0].tolist()
        raise ValueError(f"features must be finite: candidate {row}'s {names[column]} is {float(x[row, column])} "
                         f"({len(bad)} values are not)")
    if not 0 < float(y.sum()) < len(y):
        raise ValueError(f"labels need both classes: {int(y.sum())} correct of {len(y)} candidates")
    mean, scale = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / scale
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(z @ weight + bias, y) + l2 * weight.square().sum()
        value.backward()
        return value

    optimizer.step(loss)
    return Judge(tuple(names), tuple(mean.tolist()), tuple(scale.tolist()), tuple(weight.detach().tolist()),
                 float(bias.detach()), fitted_on)
