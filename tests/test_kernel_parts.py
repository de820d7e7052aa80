"""Shared kernel parts: the row windows' layout and the one-launch reduction, against their definitions.

Runs on CUDA when there is a GPU, else on CPU tensors under the Triton
interpreter (conftest sets ``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import math

import pytest
import torch
from helpers import DEVICE, examples
from hypothesis import given, settings
from hypothesis import strategies as st

from peptide_losses import reference
from peptide_losses.kernels.common import MAX_SPECTRUM_TILE, row_config, window
from peptide_losses.kernels.reduction import reduce_spectra


@given(vocab=st.integers(1, 300), element_size=st.sampled_from((1, 2, 4, 8)), contiguous=st.booleans())
def test_window_covers_every_row(vocab, element_size, contiguous):
    """Every row's V logits fit in its window, whatever its start, and vectors are at most 16 bytes."""
    block_w, align = window(vocab, element_size, contiguous)
    assert block_w == 2 ** math.ceil(math.log2(vocab))
    assert align & (align - 1) == 0 and align * element_size <= 16
    assert contiguous or align == 1
    # Row r starts at flat index r * V; its window at the multiple of ALIGN at or below.
    starts = [r * vocab for r in range(2 * align)]
    assert max(start % align for start in starts) + vocab <= block_w
    if contiguous and element_size * align < 16:  # not wider only because the window would not fit
        doubled = 2 * align
        assert max(start % doubled for start in range(0, 2 * doubled * vocab, vocab)) + vocab > block_w


def test_row_config_refuses_oversized_spectra():
    with pytest.raises(ValueError, match=r"L \* V up to .*use backend='reference'"):
        row_config(4, MAX_SPECTRUM_TILE, 2)


@settings(max_examples=examples(30))
@given(
    batch=st.sampled_from((0, 1, 2, 37, 1000, 20000)),
    dtype=st.sampled_from((torch.float32, torch.float64)),
    reduction=st.sampled_from(("mean", "sum", "none")),
    counted_fraction=st.sampled_from((0.0, 0.3, 1.0)),
    seed=st.integers(0, 2**16),
)
def test_reduction_matches_reference(batch, dtype, reduction, counted_fraction, seed):
    """One launch gives the reference's loss and denominator (sums to rounding, the count exactly)."""
    gen = torch.Generator().manual_seed(seed)
    counted = (torch.rand(batch, generator=gen) < counted_fraction).to(dtype)
    per_spectrum = (torch.rand(batch, generator=gen, dtype=dtype) * 1e3) * counted
    per_spectrum, counted = per_spectrum.to(DEVICE), counted.to(DEVICE)
    loss, denominator = reduce_spectra(per_spectrum, counted, reduction)
    expected, expected_denominator = reference.reduce_spectra(per_spectrum, counted, reduction)
    assert loss.dtype == expected.dtype and loss.shape == expected.shape
    torch.testing.assert_close(loss, expected, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
    if expected_denominator is None:
        assert denominator is None
    else:
        assert torch.equal(denominator, expected_denominator)


def test_reduction_reads_strided_rows():
    rows = torch.rand(3, 50, dtype=torch.float64, device=DEVICE)
    rows[2] = (rows[2] > 0.5).to(rows.dtype)
    strided = rows.t().contiguous().t()  # rows with stride 3
    assert strided[0].stride(0) == 3
    got = reduce_spectra(strided[0], strided[2], "mean")
    expected = reference.reduce_spectra(rows[0], rows[2], "mean")
    torch.testing.assert_close(got[0], expected[0], rtol=1e-13, atol=0)
    assert torch.equal(got[1], expected[1])
