"""The lean kernel launch (peptide_losses.kernels.launch): when it is used, and that it gives the JIT's results.

The direct launch itself needs compiled kernels: the comparison runs on the GPU.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
import triton
from hypothesis import given
from hypothesis import strategies as st

import peptide_losses as pl
from helpers import ON_CUDA
from peptide_losses.kernels import launch
from benchmarks.support.synthetic import make_batch


def test_this_triton_launches_as_the_lean_path_does():
    """Triton 3.6 to 3.9 launch with the convention the lean path replicates (read off their source)."""
    major, minor = (int(part) for part in triton.__version__.split(".")[:2])
    if not (3, 6) <= (major, minor) <= (3, 9):
        pytest.skip(f"Triton {triton.__version__}: outside the versions whose launch was checked")
    assert launch._jit_launch_matches()


def test_an_unknown_triton_launch_falls_back_to_the_jit_loudly_and_once(monkeypatch):
    monkeypatch.setattr(launch, "ENABLED", None)
    monkeypatch.setattr(launch, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(launch, "_jit_launch_matches", lambda: False)
    monkeypatch.delenv("PEPTIDE_LOSSES_LEAN_LAUNCH", raising=False)
    with pytest.warns(RuntimeWarning, match=r"through Triton's JIT instead, correct but slower \(about"):
        assert launch.lean_enabled() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert launch.lean_enabled() is False  # decided: no second warning
    monkeypatch.setattr(launch, "ENABLED", None)
    monkeypatch.setattr(launch, "_jit_launch_matches", lambda: True)
    assert launch.lean_enabled() is True
    monkeypatch.setattr(launch, "ENABLED", None)
    monkeypatch.setenv("PEPTIDE_LOSSES_LEAN_LAUNCH", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert launch.lean_enabled() is False  # turned off on purpose: silent


def test_importing_the_package_does_not_import_triton():
    code = "import sys, peptide_losses; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def _triton_class(value: int) -> tuple:
    """What Triton specialises an integer argument on: == 1, divisible by 16, its integer type."""
    width = "i32" if -(2**31) <= value < 2**31 else "u64" if value >= 2**63 else "i64"
    return value == 1, value % 16 == 0, width


INTEGERS = st.one_of(st.integers(-(2**64), 2**64), st.sampled_from([1, 0, 16, -16, 2**31 - 16, 2**31, 2**63, -(2**31)]))


@given(INTEGERS, INTEGERS)
def test_integer_keys_refine_tritons_specialisation(a, b):
    """Equal keys only for integers Triton specialises alike, so one key never stands for two kernels."""
    if launch._arg_key(a) == launch._arg_key(b):
        assert _triton_class(a) == _triton_class(b)


def test_tensor_keys_tell_apart_what_triton_specialises_on():
    """Triton compiles a kernel per pointer dtype and per 16-byte alignment: tensors alike in both share a
    key, tensors differing in either do not (the allocator aligns a fresh tensor; a 4-byte offset does not)."""
    x, y = torch.zeros(8), torch.ones(32)
    assert x.data_ptr() % 16 == 0 and y.data_ptr() % 16 == 0 and x[1:].data_ptr() % 16 == 4
    assert launch._arg_key(x) == launch._arg_key(y)
    assert launch._arg_key(x) != launch._arg_key(x[1:])
    assert launch._arg_key(x) != launch._arg_key(y.double())
    assert launch._arg_key(x[1:]) == launch._arg_key(y[5:])


@pytest.mark.skipif(not ON_CUDA, reason="the direct launch needs compiled kernels (a GPU)")
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_lean_launches_equal_jit_launches_bitwise(reduction, monkeypatch):
    """Both losses, forward and backward, first launch (JIT) and later ones (direct), against the JIT."""
    if not launch.lean_enabled():
        pytest.skip("this Triton's launch convention is not the lean path's")
    data = make_batch(64, 12, 40, device="cuda", seed=3)
    x = data.logits.requires_grad_()

    def both():
        spectrum = pl.spectrum_matching_loss(x, data.mz, data.intensity, masses=data.masses, mask=data.mask,
                                             peak_mask=data.peak_mask, reduction=reduction, distance_scale=0.05)
        precursor = pl.precursor_mass_loss(x, data.precursor_mz, data.charge, masses=data.masses,
                                           mask=data.mask, reduction=reduction)
        return spectrum, precursor, torch.autograd.grad((spectrum.sum(), precursor.sum()), x)[0]

    lean = [both() for _ in range(3)]
    monkeypatch.setattr(launch, "ENABLED", False)
    jit = both()
    for got in lean:
        assert all(torch.equal(a, b) for a, b in zip(got, jit))
    assert all(kernel.compiled for kernel in _kernels())  # the direct path was taken


def _kernels():
    from peptide_losses.kernels import backward, precursor, spectrum

    return (spectrum._SPECTRUM_FORWARD, precursor._PRECURSOR_FORWARD, backward._MASS_BACKWARD)
