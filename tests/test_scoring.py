"""spectrum_scores: candidate peptides (B, K, L) against their spectra, both backends against a brute force
that shares nothing with the package but the token masses (ion offsets from pyteomics)."""

import math

import pytest
import torch
from pyteomics import mass

from helpers import DEVICE, gpu
from peptide_losses import Vocabulary, spectrum_scores
from peptide_losses.scoring import shuffled_decoys
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


def ion_offset(ion_type: str) -> float:
    """The neutral mass an ion type adds to its residues' sum, from pyteomics (independent of the package)."""
    return mass.fast_mass("G", ion_type=ion_type) - mass.std_aa_mass["G"]


def expected_scores(tokens, mz, intensity, peak_mask, *, ion_types=("b", "y"), charges=(1, 2), direction="both",
                    distance="da", distance_scale="auto", intensity_power=1.0):
    """Each candidate's score by brute force in float64 Python: its fragment m/z from the token masses
    and pyteomics' ion offsets, every peak against every ion; +inf where it does not count."""
    proton = mass.nist_mass["H+"][0][0]
    table = VOCAB.mass_tensor(dtype=torch.float64).tolist()
    tau = {"da": 0.005, "ppm": 5.0}[distance] if distance_scale == "auto" else distance_scale
    f = (lambda d: d) if tau is None else (lambda d: tau * math.log1p(d / tau))
    batch, k, _ = tokens.shape
    out = torch.empty(batch, k)
    for b in range(batch):
        peaks = [(float(m), float(i)) for m, i, real in zip(mz[b].tolist(), intensity[b].tolist(), peak_mask[b].tolist())
                 if real]
        for j in range(k):
            residues = [table[t] for t in tokens[b, j].tolist() if t]
            ions = [(sum(residues[:n] if t in "abc" else residues[n:]) + ion_offset(t) + z * proton) / z
                    for t in ion_types for z in charges for n in range(1, len(residues))]
            if not peaks or not ions:
                out[b, j] = math.inf
                continue

            def dist(o, t):
                return abs(o - t) if distance == "da" else abs(o - t) / t * 1e6

            observed = sum(i ** intensity_power * f(min(dist(o, t) for t in ions)) for o, i in peaks) \
                / sum(i ** intensity_power for _, i in peaks)
            theoretical = sum(f(min(dist(o, t) for o, _ in peaks)) for t in ions) / len(ions)
            out[b, j] = {"observed": observed, "theoretical": theoretical, "both": observed + theoretical}[direction]
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
    want = expected_scores(tokens.cpu(), mz.cpu(), intensity.cpu(), peak_mask.cpu(), **options)
    assert got.shape == (3, 4) and got.dtype == torch.float32
    assert torch.isinf(got[0, 1]) and torch.isinf(got[-1, -1])  # only padding; one residue: no fragment
    # float32 fragment m/z (about 1e-4 Da at 2,000) against float64.
    torch.testing.assert_close(got.cpu(), want, rtol=1e-4, atol=1e-5)


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
