"""The kernels' goals (fwd+bwd from logits, b/y, charges 1-2), checked against result rows.

Each goal is a margin over what a user gets without us, measured on the H100: a
few times faster and far smaller than ``torch.compile`` of the plain-PyTorch loss
(where they come from: benchmarks/NOTES.md, "Goals").

Rows are the CSV's: every value a string, ``status`` ``"ok"`` where measured.
Time goals are checked twice: on the latency of one call (mode ``fwd+bwd``,
host launch cost included) and on the device time (``fwd+bwd graph``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    goal: str
    measured: str
    outcome: str  # "met", "missed" or "not measured"


def number(row: dict, column: str) -> float | None:
    """The column as a float, None when empty or not a number."""
    try:
        return float(row.get(column, ""))
    except (TypeError, ValueError):
        return None


def measured(rows: list[dict], **fields) -> list[dict]:
    """The ``ok`` rows whose columns equal ``fields`` (compared as strings)."""
    return [r for r in rows if r.get("status") == "ok" and all(str(r.get(k)) == str(v) for k, v in fields.items())]


#: The modes time goals are checked in (see the module docstring).
TIME_MODES = ("fwd+bwd", "fwd+bwd graph")


def _limit(rows, goal: str, column: str, limit: float, unit: str, mode: str = "fwd+bwd", **fields) -> list[Verdict]:
    """One verdict per dtype: the triton ``column`` of ``mode`` at ``fields`` is <= ``limit``."""
    found = [r for r in measured(rows, impl="triton", mode=mode, **fields) if number(r, column) is not None]
    if not found:
        return [Verdict(f"{goal} ({mode})", "-", "not measured")]
    return [
        Verdict(f"{goal} ({r['dtype']}, {mode})", f"{number(r, column):.3g} {unit}",
                "met" if number(r, column) <= limit else "missed")
        for r in found
    ]


def _spectrum_vs_compile(rows, mode: str) -> Verdict:
    goal = f"spectrum: triton faster than torch.compile at every grid point ({mode})"
    compiled = {_case_key(r): number(r, "ms") for r in measured(rows, loss="spectrum", impl="compile", mode=mode)}
    ratios = [(number(r, "ms") / compiled[_case_key(r)], r)
              for r in measured(rows, loss="spectrum", impl="triton", mode=mode) if _case_key(r) in compiled]
    if not ratios:
        return Verdict(goal, "-", "not measured")
    worst, row = max(ratios, key=lambda pair: pair[0])
    slower = sum(ratio >= 1 for ratio, _ in ratios)
    text = (f"slower at {slower} of {len(ratios)} points; worst triton/compile = {worst:.2f} "
            f"(B={row['B']} L={row['L']} N={row['N']} {row['ions']} z{row['charges']} {row['dtype']})")
    return Verdict(goal, text, "met" if slower == 0 else "missed")


def _precursor_vs_floor(rows, mode: str) -> Verdict:
    goal = f"precursor: within 3x of the HBM floor at B >= 4096 ({mode})"
    found = [r for r in measured(rows, loss="precursor", impl="triton", mode=mode) if int(r["B"]) >= 4096]
    if not found:
        return Verdict(goal, "-", "not measured")
    worst = max(found, key=lambda r: number(r, "vs_floor"))
    text = f"worst {number(worst, 'vs_floor'):.2f}x floor (B={worst['B']} L={worst['L']} {worst['dtype']}), {len(found)} points"
    return Verdict(goal, text, "met" if number(worst, "vs_floor") <= 3 else "missed")


def _case_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in ("B", "L", "N", "V", "ions", "charges", "dtype"))


def check(rows: list[dict]) -> list[Verdict]:
    spectrum_small = dict(loss="spectrum", B=1024, L=32, N=512, ions="by", charges="1-2")
    verdicts = _limit(rows, "spectrum B=1024 L=32 N=512: <= 16 MiB extra", "peak_extra_mib", 16, "MiB",
                      **spectrum_small)
    for mode in TIME_MODES:
        verdicts += [
            *_limit(rows, "spectrum B=1024 L=32 N=512: <= 0.10 ms", "ms", 0.10, "ms", mode, **spectrum_small),
            *_limit(rows, "spectrum B=1024 L=64 N=2048: <= 0.30 ms", "ms", 0.30, "ms", mode,
                    loss="spectrum", B=1024, L=64, N=2048, ions="by", charges="1-2"),
            _spectrum_vs_compile(rows, mode),
            *_limit(rows, "precursor B=4096 L=32: <= 0.05 ms", "ms", 0.05, "ms", mode, loss="precursor", B=4096, L=32),
            _precursor_vs_floor(rows, mode),
        ]
    return verdicts
