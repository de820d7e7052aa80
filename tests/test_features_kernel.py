"""The fragment-evidence kernel (kernels/features.py) against its plain-PyTorch reference
(:func:`peptide_losses.features.fragment_evidence` with ``backend="reference"``, itself checked against
pyteomics' ions in test_judge.py): random beams whose spectra hold peaks near their candidates' b and
y ions at charges 1 and 2, inside and outside the tolerance, with N-terminal modifications, padding,
empty rows and spectra without peaks."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from peptide_losses import Vocabulary
from peptide_losses.constants import H2O, PROTON
from peptide_losses.features import TOLERANCE, fragment_evidence

from helpers import DEVICE, examples

VOCAB = Vocabulary.default()
MASSES = VOCAB.mass_tensor()
START_ONLY = VOCAB.start_only_mask()
RESIDUES = [i for i, name in enumerate(VOCAB.tokens) if not VOCAB.is_special(name) and not VOCAB.is_n_terminal(name)]
OPENINGS = [i for i, name in enumerate(VOCAB.tokens) if VOCAB.is_n_terminal(name)]


def random_beam(batch: int, k: int, length: int, n_peaks: int, seed: int):
    """Token rows (B, K, L) and peaks (B, N): a third of the peaks near an ion of one of the
    spectrum's candidates, offset by up to 3x the tolerance, the rest anywhere in 100-2,000 m/z."""
    g = torch.Generator().manual_seed(seed)
    residues = torch.tensor(RESIDUES)[torch.randint(len(RESIDUES), (batch, k, length), generator=g)]
    lengths = torch.randint(0, length + 1, (batch, k), generator=g)
    tokens = torch.where(torch.arange(length) < lengths[..., None], residues, 0)
    opening = (torch.rand(batch, k, generator=g) < 0.3) & (lengths > 0)
    tokens[..., 0] = torch.where(opening, torch.tensor(OPENINGS)[torch.randint(len(OPENINGS), (batch, k), generator=g)],
                                 tokens[..., 0])
    prefix = MASSES[tokens].cumsum(-1)  # an opening's mass makes every b ion heavier, as it should
    ions = torch.cat([prefix + PROTON, prefix[..., -1:] - prefix + H2O + PROTON], -1)
    ions = torch.cat([ions, (ions + PROTON) / 2], -1).reshape(batch, -1)
    mz = 100 + 1900 * torch.rand(batch, n_peaks, generator=g, dtype=torch.float64)
    near = torch.rand(batch, n_peaks, generator=g) < 1 / 3
    pick = ions.gather(1, torch.randint(ions.shape[1], (batch, n_peaks), generator=g))
    offset = (2 * torch.rand(batch, n_peaks, generator=g, dtype=torch.float64) - 1) * 3 * TOLERANCE
    mz = torch.where(near & (pick > 50), pick + offset, mz)
    intensity = torch.rand(batch, n_peaks, generator=g)
    peak_mask = torch.rand(batch, n_peaks, generator=g) < 0.9
    return tokens, mz.float(), intensity, peak_mask


def assert_same_features(kernel: torch.Tensor, reference: torch.Tensor) -> None:
    """Every feature but the first is a count over a count, summed in the same integers: equal. The
    first sums intensities in another order: float64 sums, then float32, within a few ulps."""
    kernel = kernel.cpu()
    assert kernel.dtype == reference.dtype == torch.float32 and kernel.shape == reference.shape
    assert torch.equal(kernel[..., 1:], reference[..., 1:])
    torch.testing.assert_close(kernel[..., 0], reference[..., 0], rtol=1e-6, atol=1e-7)


@settings(max_examples=examples(25))
@given(batch=st.integers(1, 3), k=st.integers(1, 4), length=st.integers(1, 24), n_peaks=st.integers(0, 90),
       seed=st.integers(0, 2**31 - 1))
def test_kernel_matches_the_reference(batch, k, length, n_peaks, seed):
    tokens, mz, intensity, peak_mask = random_beam(batch, k, length, n_peaks, seed)
    reference = fragment_evidence(tokens, MASSES, START_ONLY, mz, intensity, peak_mask, backend="reference")
    on = [t.to(DEVICE) for t in (tokens, MASSES, START_ONLY, mz, intensity, peak_mask)]
    assert_same_features(fragment_evidence(*on, backend="triton"), reference)


def test_kernel_reads_strided_inputs_and_float64_peaks():
    """A beam sliced out of a larger one and peaks in float64 with a strided mask: as contiguous copies."""
    tokens, mz, intensity, peak_mask = random_beam(3, 6, 16, 70, seed=7)
    tokens, mz64 = tokens[:, ::2], mz.double()[:, ::2]
    intensity, peak_mask = intensity[:, ::2], peak_mask[:, ::2]
    assert not tokens.is_contiguous() and not mz64.is_contiguous()
    reference = fragment_evidence(tokens.contiguous(), MASSES, START_ONLY, mz64.contiguous(), intensity.contiguous(),
                                  peak_mask.contiguous(), backend="reference")
    on = [t.to(DEVICE) for t in (tokens, MASSES, START_ONLY, mz64, intensity, peak_mask)]
    assert_same_features(fragment_evidence(*on, backend="triton"), reference)


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_the_site_features_never_read_past_the_row(backend):
    """Length-2 rows have one site: "second site" and "second-last site" are absent, whatever the layout
    (the reference read site 1 twice at L = 2 before); a length-1 layout has none at all."""
    device = DEVICE if backend == "triton" else torch.device("cpu")
    two = torch.tensor([[VOCAB.encode("PK")]], device=device)
    peaks = torch.tensor([[VOCAB.peptide_mass("P") - H2O + PROTON]], dtype=torch.float64, device=device)
    ones = torch.ones(1, 1, device=device)
    mask = torch.ones(1, 1, dtype=torch.bool, device=device)
    masses, start_only = MASSES.to(device), START_ONLY.to(device)
    got = fragment_evidence(two, masses, start_only, peaks, ones, mask, backend=backend)[0, 0].tolist()
    assert got[6:] == [1.0, 0.0, 1.0, 0.0]  # first, second, last, second-last site
    one = fragment_evidence(torch.tensor([[VOCAB.encode("K")]], device=device), masses, start_only, peaks, ones, mask,
                            backend=backend)
    assert one.abs().sum() == 0
