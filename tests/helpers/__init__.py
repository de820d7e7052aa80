"""What the tests share: a test file imports ``peptide_losses`` and this package, never another test file.

Here: the device, hypothesis example counts, the GPU-only mark, an edit of one
element of an argument. Beside it: ``vocabulary`` (the default tokens' masses from
pyteomics, peptide strategies), ``model_targets`` (teacher-forcing targets of
Casanovo and InstaNovo), ``spectrum_error_model`` (the float32 error bounds of
the spectrum loss), ``casanovo_run`` (an mzTab written by ``casanovo sequence`` itself)
and ``mzml`` (a minimal mzML writer for the reader's tests).
"""

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


def set_at(name: str, index, value):
    """An edit of an argument dict: a copy of tensor ``name`` with ``value`` at ``index``."""
    def edit(args):
        args[name] = args[name].clone()
        args[name][index] = value
    return edit
