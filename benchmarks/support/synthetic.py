"""Random loss inputs of any size, for tests and benchmarks (not for training data).

Peaks are drawn partly on the fragment ions of a random "true" peptide (with
m/z jitter) and partly as uniform noise, so nearest-ion searches see both
close and far peaks, as on real spectra.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from peptide_losses.constants import H2O, PROTON
from peptide_losses.reference import fragment_mz
from peptide_losses.vocabulary import Vocabulary


@dataclass
class LossBatch:
    """Inputs of both losses. Shapes: logits (B, L, V); masses (V,) Da; mask (B, L);
    mz, intensity, peak_mask (B, N); precursor_mz (B,) float64 m/z; charge (B,) int64."""

    logits: torch.Tensor
    masses: torch.Tensor
    mask: torch.Tensor
    mz: torch.Tensor
    intensity: torch.Tensor
    peak_mask: torch.Tensor
    precursor_mz: torch.Tensor
    charge: torch.Tensor


def make_batch(
    batch: int,
    length: int,
    n_peaks: int,
    *,
    vocab_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    seed: int = 0,
    ragged: bool = True,
    peak_fraction_on_ions: float = 0.5,
    logit_scale: float = 3.0,
) -> LossBatch:
    """A reproducible random batch.

    Args:
        batch, length, n_peaks: B, L, N.
        vocab_size: V; default the default :class:`Vocabulary` (29 tokens).
            Other sizes draw token masses uniformly in [50, 200) Da.
        dtype: dtype of the logits (masses stay float64, peaks float32).
        ragged: random peptide lengths and peak counts (padding masked out).
        peak_fraction_on_ions: share of peaks placed near true b/y ions.
        logit_scale: std of the logits (larger: peakier softmax).
    """
    gen = torch.Generator().manual_seed(seed)
    vocabulary = Vocabulary.default()
    if vocab_size is None or vocab_size == len(vocabulary):
        masses = vocabulary.mass_tensor()
    else:
        masses = torch.cat([torch.zeros(1, dtype=torch.float64), 50 + 150 * torch.rand(vocab_size - 1, generator=gen, dtype=torch.float64)])
    vocab = masses.shape[0]
    logits = torch.randn(batch, length, vocab, generator=gen) * logit_scale
    if ragged:
        lengths = torch.randint(0, length + 1, (batch,), generator=gen)
        counts = torch.randint(0, n_peaks + 1, (batch,), generator=gen)
    else:
        lengths = torch.full((batch,), length)
        counts = torch.full((batch,), n_peaks)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    peak_mask = torch.arange(n_peaks)[None, :] < counts[:, None]

    true_tokens = torch.randint(1, vocab, (batch, length), generator=gen)
    true_masses = masses[true_tokens]
    ions, valid = fragment_mz(true_masses, mask, ("b", "y"), (1,))
    mz = 50 + 1950 * torch.rand(batch, n_peaks, generator=gen, dtype=torch.float64)
    if ions.shape[1] and n_peaks:
        pick = torch.randint(0, ions.shape[1], (batch, n_peaks), generator=gen)
        # A negative N-terminal modification token (e.g. -17.027) can put b1 below 0: no observed
        # m/z is <= 0 (the losses give NaN for one, peptide_losses.checks).
        picked = ions.gather(1, pick)
        on_ion = (torch.rand(batch, n_peaks, generator=gen) < peak_fraction_on_ions) & valid.gather(1, pick) & (picked > 1)
        jitter = 0.01 * torch.randn(batch, n_peaks, generator=gen, dtype=torch.float64)
        mz = torch.where(on_ion, picked + jitter, mz)
    intensity = torch.rand(batch, n_peaks, generator=gen)
    charge = torch.randint(1, 4, (batch,), generator=gen)
    peptide = torch.where(mask, true_masses, 0).sum(-1) + H2O
    precursor_mz = (peptide + charge * PROTON) / charge * (1 + 20e-6 * torch.randn(batch, generator=gen, dtype=torch.float64))
    return LossBatch(
        logits=logits.to(device=device, dtype=dtype),
        masses=masses.to(device),
        mask=mask.to(device),
        mz=mz.to(device=device, dtype=torch.float32),
        intensity=intensity.to(device),
        peak_mask=peak_mask.to(device),
        precursor_mz=precursor_mz.to(device),
        charge=charge.to(device),
    )
