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
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .features import FEATURES, PSM_FEATURES
from .predicted_intensity import FEATURE as INTENSITY_FEATURE

#: The features a beam judge reads: without ms2pip, and with its predicted-intensity correlation.
FEATURE_SETS = {False: FEATURES, True: (*FEATURES, INTENSITY_FEATURE)}
#: The features a judge of another tool's PSMs reads, likewise.
PSM_FEATURE_SETS = {False: PSM_FEATURES, True: (*PSM_FEATURES, INTENSITY_FEATURE)}
_KNOWN = {names: ("psm" if sets is PSM_FEATURE_SETS else "beam") for sets in (FEATURE_SETS, PSM_FEATURE_SETS)
          for names in sets.values()}


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
                             f"{list(FEATURE_SETS[True])} for its beams and {list(PSM_FEATURE_SETS[True])} for "
                             f"another tool's PSMs (the last with ms2pip): refit it (peptide-losses fit-judge)")
        if not len(self.mean) == len(self.scale) == len(self.weight) == len(self.features):
            raise ValueError(f"a judge needs {len(self.features)} means, scales and weights")

    @property
    def kind(self) -> str:
        """``"beam"`` (the package's own beams) or ``"psm"`` (another tool's PSMs, with its score)."""
        return _KNOWN[tuple(self.features)]

    @property
    def uses_intensity(self) -> bool:
        """It reads ms2pip's predicted-intensity correlation (needs ms2pip to run)."""
        return INTENSITY_FEATURE in self.features

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


def fit_judge(features: torch.Tensor, labels: torch.Tensor, *, l2: float = 1e-2, fitted_on: str = "") -> Judge:
    """A logistic regression of ``labels`` (R,) bool on ``features`` (R, F), F the width of one of
    :data:`FEATURE_SETS` or :data:`PSM_FEATURE_SETS` (all four widths differ), L2-penalised by ``l2`` on the standardised weights; full-batch L-BFGS in
    float64 from zero weights, so the same data give the same judge."""
    x, y = features.double(), labels.double()
    widths = {len(names): names for names in _KNOWN}
    assert len(widths) == len(_KNOWN), "feature sets of one width would be ambiguous"
    if x.dim() != 2 or x.shape[1] not in widths or y.shape != x.shape[:1]:
        raise ValueError(f"features must be (R, F) with F in {sorted(widths)} and labels (R,), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
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
    return Judge(widths[x.shape[1]], tuple(mean.tolist()), tuple(scale.tolist()), tuple(weight.detach().tolist()),
                 float(bias.detach()), fitted_on)
