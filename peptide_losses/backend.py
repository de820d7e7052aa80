"""Choosing between the Triton kernels and the reference implementation."""

from __future__ import annotations

import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "reference")


# Looked up once: what is installed does not change while running, and torch.compile
# then has no import machinery to trace (only torch versions that special-case it can).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_installed() -> bool:
    return _TRITON_INSTALLED


def interpreter_enabled() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors (slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"triton"`` or ``"reference"`` for tensors on ``device``.

    ``"auto"`` takes the kernels for CUDA tensors, and for CPU tensors when the
    Triton interpreter is on; otherwise the reference. ``"triton"`` where the
    kernels cannot run is an error rather than a silent fallback.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return "reference"
    if not triton_installed():
        # setup.py installs triton on Linux only, the one platform it publishes wheels for.
        reason = "triton is not installed (it has wheels for Linux only: there, pip install 'triton>=3.2')"
    elif device.type == "cuda" or (device.type == "cpu" and interpreter_enabled()):
        return "triton"
    elif device.type == "cpu":
        reason = "the tensors are on the CPU and TRITON_INTERPRET=1 is not set"
    else:
        reason = f"the kernels do not run on {device.type} tensors"
    if backend == "triton":
        raise ValueError(f"backend='triton' cannot run here: {reason}; use backend='auto' or 'reference'")
    return "reference"
