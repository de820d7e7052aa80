"""spectrum_scores: candidate peptides (B, K, L) against their spectra, both backends against the reference."""

import pytest
import torch

from helpers import DEVICE, gpu
from peptide_losses import Vocabulary, reference, spectrum_scores
from peptide_losses.scoring import candidate_masses, shuffled_decoys
from peptide_losses.spectra import collate
from peptide_losses.train.data import read_annotated

VOCAB = Vocabulary.default()
BACKENDS = ("reference", "triton")


def candidates(batch=3, k=4, length=9, peaks=13, seed=0):
    """Random token rows (padding after a random length, some rows empty or of one residue) and spectra."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, len(VOCAB), (batch, k, length), generator=g)
    lengths = torch.randint(2, length + 1, (batch, k), generator=g)
    lengths[0, 1], lengths[-1, -1] = 0, 1
    tokens = torch.where(torch.arange(length) < lengths[..., None], tokens, 0)
    mz = torch.rand(batch, peaks, generator=g) * 1500 + 100
    intensity = torch.rand(batch, peaks, generator=g)
    peak_mask = torch.rand(batch, peaks, generator=g) > 0.2
    return tokens.to(DEVICE), mz.to(DEVICE), intensity.to(DEVICE), peak_mask.to(DEVICE)


def expected_scores(tokens, mz, intensity, peak_mask, **options):
    """The reference loss of each candidate alone, from its exact float32 residue masses; +inf where it does not count."""
    batch, k, length = tokens.shape
    out = torch.empty(batch, k)
    for b in range(batch):
        for j in range(k):
            masses, mask = candidate_masses(tokens[b, j][None].cpu(), VOCAB.mass_tensor(dtype=torch.float32))
            loss, counted = reference.spectrum_matching_rows(masses, mask, mz[b][None].cpu(), intensity[b][None].cpu(),
                                                             peak_mask[b][None].cpu(), **options)
            out[b, j] = loss[0] if counted[0] else torch.inf
    return out


OPTION_CASES = [
    {},
    {"direction": "observed", "distance": "ppm"},
    {"direction": "theoretical", "ion_types": ("a", "b", "y"), "charges": (1, 2, 3), "distance_scale": None},
    {"intensity_power": 0.5, "distance_scale": 0.02},
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", OPTION_CASES, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_scores_are_each_candidates_reference_loss(backend, options):
    tokens, mz, intensity, peak_mask = candidates()
    got = spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask, backend=backend, **options)
    full = {"direction": "both", **options}
    want = expected_scores(tokens, mz, intensity, peak_mask, **full)
    assert got.shape == (3, 4) and got.dtype == torch.float32
    assert torch.isinf(got[0, 1]) and torch.isinf(got[-1, -1])  # only padding; one residue: no fragment
    torch.testing.assert_close(got.cpu(), want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_values_give_nan_only_where_they_are(backend):
    tokens, mz, intensity, peak_mask = candidates()
    tokens[1, 2, 0] = len(VOCAB)  # outside the vocabulary
    mz[2, 0], peak_mask[2, 0] = float("nan"), True
    got = spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask, backend=backend).cpu()
    nan = torch.zeros(3, 4, dtype=torch.bool)
    nan[1, 2], nan[2] = True, True
    assert torch.equal(got.isnan(), nan)
    # No real peak: nothing to explain, so no candidate can be scored.
    peak_mask[0] = False
    assert torch.isinf(spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask, backend=backend)[0]).all()


def test_bad_arguments_name_the_argument():
    tokens, mz, intensity, peak_mask = candidates()
    with pytest.raises(ValueError, match=r"tokens must be \(B, K, L\).*tokens\[:, None\]"):
        spectrum_scores(tokens[:, 0], mz, intensity, masses=VOCAB)
    with pytest.raises(TypeError, match="tokens must be an integer"):
        spectrum_scores(tokens.float(), mz, intensity, masses=VOCAB)
    with pytest.raises(ValueError, match="mz has 2 spectra but tokens has 3"):
        spectrum_scores(tokens, mz[:2], intensity[:2], masses=VOCAB)
    with pytest.raises(ValueError, match="intensity"):
        spectrum_scores(tokens, mz, intensity[:, :5], masses=VOCAB)
    with pytest.raises(ValueError, match="masses"):
        spectrum_scores(tokens, mz, intensity, masses=VOCAB.mass_tensor()[None])
    with pytest.raises(ValueError, match="masses"):
        spectrum_scores(tokens, mz, intensity, masses=None)
    with pytest.raises(ValueError, match="direction"):
        spectrum_scores(tokens, mz, intensity, masses=VOCAB, direction="sideways")
    with pytest.raises(ValueError, match="peak_mask"):
        spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask[:, :3])


def test_the_true_peptide_scores_below_its_same_mass_permutations_on_real_spectra(real_mgf):
    items = read_annotated(real_mgf, VOCAB, 40)
    batch = collate(items, VOCAB, max_length=40)
    decoys = shuffled_decoys(batch.tokens, VOCAB.mass_tensor(), 20, torch.Generator().manual_seed(0))
    # Every decoy has the peptide's mass and differs from it somewhere.
    masses = VOCAB.mass_tensor()
    assert torch.allclose(masses[decoys].sum(-1), masses[batch.tokens].sum(-1)[:, None])
    differs = ((masses[decoys] - masses[batch.tokens][:, None]).abs() > 1e-3).any(-1)
    assert differs.float().mean() > 0.99
    tokens = torch.cat([batch.tokens[:, None], decoys], 1)
    scores = spectrum_scores(tokens, batch.mz, batch.intensity, masses=VOCAB, peak_mask=batch.peak_mask,
                             backend="reference")
    first = (scores[:, :1] < scores[:, 1:]).all(1).float().mean()
    assert first >= 0.95, f"true peptide first in {first:.3f} of {len(items)} spectra"


@gpu
def test_scores_run_without_a_host_sync_and_replay_in_a_cuda_graph():
    tokens, mz, intensity, peak_mask = candidates(batch=64, k=20, length=20, peaks=150)
    masses = VOCAB.mass_tensor(device=DEVICE)
    expected = spectrum_scores(tokens, mz, intensity, masses=masses, peak_mask=peak_mask)
    torch.cuda.set_sync_debug_mode("error")
    try:
        spectrum_scores(tokens, mz, intensity, masses=masses, peak_mask=peak_mask)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = spectrum_scores(tokens, mz, intensity, masses=masses, peak_mask=peak_mask)
    mz.add_(0.01)
    graph.replay()
    assert torch.equal(captured, spectrum_scores(tokens, mz, intensity, masses=masses, peak_mask=peak_mask))
    assert not torch.equal(captured, expected)


@gpu
def test_scores_at_decoding_size_equal_the_reference():
    tokens, mz, intensity, peak_mask = candidates(batch=256, k=20, length=20, peaks=150, seed=1)
    got = spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask)
    want = spectrum_scores(tokens, mz, intensity, masses=VOCAB, peak_mask=peak_mask, backend="reference")
    torch.testing.assert_close(got, want, rtol=2e-5, atol=2e-6)
