"""Bad values inside the kernels (:mod:`peptide_losses.bad_values`): each spectrum with one gets a NaN loss
and NaN d loss / d mass, so that nothing needs a host sync and no bad value comes out finite."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _finite(x):
    """Neither NaN nor +-inf."""
    return tl.abs(x) < float("inf")


@triton.jit
def _positive_finite(x):
    """Finite and > 0 (False for NaN)."""
    return (x > 0) & (x < float("inf"))


@triton.jit
def _nan_where(bad, value):
    return tl.where(bad, float("nan"), value)
