"""The benchmark grid: which loss sizes and options to measure.

A :class:`Case` is one point (one loss at one size, series, charges, dtype).
Named grids: ``headline`` (the goal points, :mod:`.goals`), ``sweep`` (one factor at a
time around a centre point, plus the headline points: what the plots draw),
``full`` (the whole cross product, hours) and ``smoke`` (tiny sizes for a CPU).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import torch

from peptide_losses.vocabulary import Vocabulary

LOSSES = ("spectrum", "precursor")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: Vocabulary size of every case: the default vocabulary's (29: no row of (B, L, V) logits
#: starts on a vector boundary, the case the kernels' row windows exist for).
VOCAB_SIZE = len(Vocabulary.default())

BY = ("b", "y")
ALL_IONS = ("a", "b", "c", "x", "y", "z")

#: Values of each axis in the full grid, per loss. The precursor loss has no
#: peaks, series or fragment charges; its B axis goes further because it is cheap.
AXES = {
    "spectrum": {
        "batch": (64, 256, 1024, 4096),
        "length": (16, 32, 64, 128),
        "n_peaks": (150, 512, 2048, 4096),
        "ion_types": (BY, ALL_IONS),
        "charges": ((1, 2), (1, 2, 3)),
        "dtype": ("fp32", "bf16"),
    },
    "precursor": {
        "batch": (64, 256, 1024, 4096, 16384),
        "length": (16, 32, 64, 128),
        "dtype": ("fp32", "bf16"),
    },
}
SMOKE_AXES = {
    "spectrum": {"batch": (2, 4, 8), "length": (4, 8), "n_peaks": (8, 16, 32),
                 "ion_types": (BY, ALL_IONS), "charges": ((1, 2), (1, 2, 3)), "dtype": ("fp32", "bf16")},
    "precursor": {"batch": (2, 4, 8), "length": (4, 8), "dtype": ("fp32", "bf16")},
}


@dataclass(frozen=True, order=True)
class Case:
    """One grid point. ``n_peaks``, ``ion_types`` and ``charges`` are unused (0, ()) for the precursor loss."""

    loss: str
    batch: int
    length: int
    n_peaks: int = 0
    ion_types: tuple[str, ...] = ()
    charges: tuple[int, ...] = ()
    dtype: str = "fp32"
    vocab: int = VOCAB_SIZE

    @property
    def n_ions(self) -> int:
        """M, theoretical ions per spectrum: series x charges x L."""
        return len(self.ion_types) * len(self.charges) * self.length

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def label(self) -> str:
        """Short human-readable name, e.g. ``spectrum B=1024 L=32 N=512 by z1-2 fp32``."""
        if self.loss == "precursor":
            return f"precursor B={self.batch} L={self.length} {self.dtype}"
        charges = f"z{self.charges[0]}-{self.charges[-1]}"
        return f"spectrum B={self.batch} L={self.length} N={self.n_peaks} {''.join(self.ion_types)} {charges} {self.dtype}"


def spectrum_case(batch: int, length: int, n_peaks: int, dtype: str = "fp32",
                  ion_types: Sequence[str] = BY, charges: Sequence[int] = (1, 2)) -> Case:
    return Case("spectrum", batch, length, n_peaks, tuple(ion_types), tuple(charges), dtype)


def precursor_case(batch: int, length: int, dtype: str = "fp32") -> Case:
    return Case("precursor", batch, length, dtype=dtype)


#: The sweep's centre point of each loss (its first goal point).
CENTERS = {"spectrum": spectrum_case(1024, 32, 512), "precursor": precursor_case(4096, 32)}
SMOKE_CENTERS = {"spectrum": spectrum_case(4, 8, 16), "precursor": precursor_case(4, 8)}

#: The goal points (:mod:`.goals`), fp32 and bf16 (fwd+bwd from logits, b/y, charges 1-2).
HEADLINE = tuple(
    case
    for dtype in DTYPES
    for case in (
        spectrum_case(1024, 32, 512, dtype),
        spectrum_case(1024, 64, 2048, dtype),
        precursor_case(4096, 32, dtype),
        precursor_case(16384, 32, dtype),
    )
)


def one_factor_sweep(center: Case, axes: dict[str, tuple]) -> list[Case]:
    """The centre, then every case that differs from it on exactly one axis."""
    cases = [center]
    for axis, values in axes.items():
        cases += [replace(center, **{axis: value}) for value in values if value != getattr(center, axis)]
    return cases


def cross_product(loss: str, axes: dict[str, tuple]) -> list[Case]:
    names = list(axes)
    return [Case(loss, **dict(zip(names, values))) for values in itertools.product(*axes.values())]


def unique(cases: Iterable[Case]) -> list[Case]:
    """Cases in first-seen order without repeats."""
    return list(dict.fromkeys(cases))


GRIDS = ("headline", "sweep", "full", "smoke")


def grid_cases(name: str) -> list[Case]:
    """Every case of the named grid, both losses, without repeats."""
    if name == "headline":
        return list(HEADLINE)
    if name == "sweep":
        return unique([*(c for loss in LOSSES for c in one_factor_sweep(CENTERS[loss], AXES[loss])), *HEADLINE])
    if name == "full":
        return unique(c for loss in LOSSES for c in cross_product(loss, AXES[loss]))
    if name == "smoke":
        return unique(c for loss in LOSSES for c in one_factor_sweep(SMOKE_CENTERS[loss], SMOKE_AXES[loss]))
    raise ValueError(f"grid must be one of {GRIDS}, got {name!r}")


def grid_centers(name: str) -> dict[str, Case]:
    """The point the plots' lines go through: one factor varies, the others stay here."""
    return SMOKE_CENTERS if name == "smoke" else CENTERS


def select(cases: Iterable[Case], *, losses: Sequence[str] = LOSSES, dtypes: Sequence[str] = tuple(DTYPES),
           max_batch: int | None = None) -> list[Case]:
    """The cases of the given losses and dtypes, with B <= ``max_batch`` if given."""
    for name, given, known in (("loss", losses, LOSSES), ("dtype", dtypes, tuple(DTYPES))):
        bad = sorted(set(given) - set(known))
        if bad:
            raise ValueError(f"{name} must be among {known}, got {bad}")
    return [
        c for c in cases
        if c.loss in losses and c.dtype in dtypes and (max_batch is None or c.batch <= max_batch)
    ]
