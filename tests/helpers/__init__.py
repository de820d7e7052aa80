"""What several test files share: the device, hypothesis example counts, the GPU-only mark."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEVICE.type == "cuda"
#: On CUDA every hypothesis example compiles new kernel variants (1-3 s each), while the
#: interpreter runs the same maths on the CPU: a third of the examples there.
CUDA_SHARE = 3


def examples(n: int) -> int:
    """Hypothesis examples of a test that takes ``n`` under the "ci" profile on the CPU.

    Scaled by the loaded profile (``--hypothesis-profile=thorough``: 10x, see
    conftest.py) and, on CUDA, by 1 / CUDA_SHARE (at least 2).
    """
    scale = settings.default.max_examples / settings.get_profile("ci").max_examples
    n = max(1, round(n * scale))
    return max(2, n // CUDA_SHARE) if ON_CUDA else n


def gpu(test):
    """Marks a realistic-size test: marker ``gpu``, skipped without CUDA (the interpreter would take hours)."""
    return pytest.mark.gpu(pytest.mark.skipif(not ON_CUDA, reason="realistic sizes need CUDA")(test))
