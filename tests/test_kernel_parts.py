"""Shared kernel parts: the row windows' layout and the reduction inside the forward kernel, against their definitions.

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
from peptide_losses.kernels.common import MAX_SPECTRUM_TILE, counter, row_config, window
from peptide_losses.kernels.precursor import precursor_forward


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


def _precursor_inputs(batch: int, dtype: torch.dtype, seed: int):
    """Residue masses (B, 1) and data whose loss rows cover counted, uncounted and NaN (bad) spectra."""
    gen = torch.Generator().manual_seed(seed)
    residue = (100 + 1000 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)).to(dtype)
    mask = torch.rand(batch, 1, generator=gen) < 0.7
    precursor_mz = 200 + 1000 * torch.rand(batch, generator=gen, dtype=torch.float64)
    charge = torch.randint(1, 4, (batch,), generator=gen)
    return [t.to(DEVICE) for t in (residue, mask, precursor_mz, charge)]


@settings(deadline=None, max_examples=examples(20))
@given(
    batch=st.sampled_from((0, 1, 2, 37, 1000, 1025, 20000)),
    dtype=st.sampled_from((torch.float32, torch.float64)),
    reduction=st.sampled_from(("mean", "sum")),
    seed=st.integers(0, 2**16),
)
def test_reduction_in_the_forward_kernel_matches_the_reference(batch, dtype, reduction, seed):
    """The last program's sum (or mean) of the rows the launch wrote: the reference's to rounding,
    the count exactly; the rows are those of an unreduced launch, and the counter is back at 0."""
    residue, mask, precursor_mz, charge = _precursor_inputs(batch, dtype, seed)
    options = dict(scale=100.0, isotope_errors=(0,))
    rows = precursor_forward(residue, None, mask, precursor_mz, charge, **options).rows.view(3, batch)
    out = precursor_forward(residue, None, mask, precursor_mz, charge, **options, reduction=reduction).rows
    assert torch.equal(out[:3 * batch].view(3, batch), rows)
    expected, expected_denominator = reference.reduce_spectra(rows[0], rows[2], reduction)
    torch.testing.assert_close(out[3 * batch], expected, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
    if reduction == "mean":
        assert out[3 * batch + 1].item() == max(rows[2].sum().item(), 1.0)
    assert counter(torch.device(DEVICE)).item() == 0


def test_reduction_is_nan_with_a_bad_spectrum():
    residue, mask, precursor_mz, charge = _precursor_inputs(1030, torch.float32, 0)
    mask[:] = True
    charge[1029] = 0
    out = precursor_forward(residue, None, mask, precursor_mz, charge, scale=100.0, isotope_errors=(0,),
                            reduction="mean").rows
    assert torch.isnan(out[3 * 1030]) and out[3 * 1030 + 1].item() == 1030


@pytest.mark.skipif(DEVICE.type != "cuda", reason="concurrent streams need a GPU")
def test_reductions_on_concurrent_streams_keep_their_own_counters():
    """Each stream has its counter: the same launches interleaved on two streams give each one's result."""
    inputs = [_precursor_inputs(3000, torch.float32, seed) for seed in (1, 2)]
    options = dict(scale=100.0, isotope_errors=(0,), reduction="mean")
    expected = [precursor_forward(r, None, m, p, c, **options).rows[-2:] for r, m, p, c in inputs]
    streams = [torch.cuda.Stream() for _ in inputs]
    for stream in streams:
        stream.wait_stream(torch.cuda.current_stream())
    results = [[], []]
    for _ in range(20):
        for stream, args, out in zip(streams, inputs, results):
            with torch.cuda.stream(stream):
                out.append(precursor_forward(*args[:1], None, *args[1:], **options).rows[-2:])
    torch.cuda.synchronize()
    for want, got in zip(expected, results):
        assert all(torch.equal(g, want) for g in got)
