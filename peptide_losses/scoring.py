"""How well finished candidate peptides explain their spectra: :func:`spectrum_scores`.

A de novo model's beam holds K finished candidates per spectrum. Their token
rows give exact residue masses, so the spectrum matching loss of each (no
softmax, no one-hot tensor: the masses are gathered from the vocabulary) is a
score of how well that peptide's fragment ions explain the observed peaks.
The fused kernel scores all B x K candidates in one launch, reading each
spectrum's peaks once per candidate without copying them K times, and keeps
no (B * K, N, M) distance matrix. :mod:`peptide_losses.decoding` combines the
scores with the model's and the precursor's.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from . import reference
from .checks import (bad_candidate_positions, check_float, check_integer_tensor, check_same_device, check_shape,
                     real_peaks, resolve_backend)
from .options import spectrum_options
from .reference import SPECTRUM_DEFAULTS
from .vocabulary import Vocabulary


#: Options of :func:`spectrum_scores`: the spectrum loss's (:data:`~peptide_losses.reference.SPECTRUM_DEFAULTS`,
#: one place) but ``direction="both"``, chosen on real spectra and reranked beams: a candidate is judged
#: by the peaks it leaves unexplained *and* by the ions it predicts where there is no peak. With b/y ions
#: at charges 1 and 2 and tau = 0.005 Da the true peptide scores below all of 20 same-mass permutations in
#: 99.2 % of the 128 real spectra, and reranking a beam of 20 gives the best hard recall of the option sets
#: measured but a/b/y (whose gain is partly the simulator's a ions); docs/sequencing.md, "Where the mass
#: losses help", ``benchmarks/results/nvidia-h200/decoding/``. (``reduction`` does not apply: one score
#: per candidate.)
SCORE_DEFAULTS = dataclasses.replace(SPECTRUM_DEFAULTS, direction="both")
#: Peaks per tile and warps of the scoring launch: a short peptide's forward alone (no
#: gradient) per program is latency-bound, and small programs keep more of them in flight.
#: The sweep that chose them: benchmarks/NOTES.md, "Launch parameters".
SCORE_BLOCK_N = 64
SCORE_NUM_WARPS = 1


def candidate_masses(tokens: torch.Tensor, masses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residue masses (Da) and position mask of token rows, any leading shape ``(..., L)``.

    A token of mass 0 (padding, token 0, or a special token such as a stop
    token) is not a position. Bad values (:mod:`peptide_losses.checks`) get a
    NaN mass, so their row's score or ppm is NaN, with no host sync: a token
    outside ``[0, V)``, and a residue after the peptide's end (after padding
    or a special token).
    """
    vocab = masses.shape[0]
    inside = (tokens >= 0) & (tokens < vocab)
    gathered = masses[tokens.clamp(0, vocab - 1)]
    position = ~inside | (gathered != 0)
    bad = ~inside | bad_candidate_positions(position)
    return torch.where(bad, torch.nan, gathered), position


def checked_tokens(tokens) -> torch.Tensor:
    """``tokens`` is an integer tensor (B, K, L) of candidate token rows; TypeError / ValueError naming it."""
    check_integer_tensor("tokens", tokens, "(B, K, L)")
    if tokens.dim() != 3:
        raise ValueError(f"tokens must be (B, K, L): K candidate token rows per spectrum, got shape "
                         f"{tuple(tokens.shape)}; one candidate per spectrum is tokens[:, None]")
    return tokens


def checked_masses(masses, device) -> torch.Tensor:
    """The (V,) float32 / float64 token masses (Da) of ``masses``, a tensor or a :class:`Vocabulary`, on ``device``."""
    if isinstance(masses, Vocabulary):
        return masses.mass_tensor(device=device)
    if masses is None:
        raise ValueError("masses (V,) is required: pass Vocabulary.mass_tensor() or the Vocabulary")
    check_float("masses", masses, 1, precise=True)
    if masses.shape[0] == 0:
        raise ValueError("masses must hold at least the padding token (index 0, mass 0), got shape (0,)")
    if masses.device != device:
        check_same_device(tokens=torch.empty(0, device=device), masses=masses)
    return masses


@torch.no_grad()
def spectrum_scores(
    tokens: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    *,
    masses: torch.Tensor | Vocabulary,
    peak_mask: torch.Tensor | None = None,
    ion_types: Sequence[str] = SCORE_DEFAULTS.ion_types,
    charges: Sequence[int] = SCORE_DEFAULTS.charges,
    direction: str = SCORE_DEFAULTS.direction,
    distance: str = SCORE_DEFAULTS.distance,
    distance_scale: float | str | None = SCORE_DEFAULTS.distance_scale,
    intensity_power: float = SCORE_DEFAULTS.intensity_power,
    backend: str = "auto",
) -> torch.Tensor:
    """The spectrum matching loss of every candidate peptide: (B, K), lower = better explained.

    Args:
        tokens: (B, K, L) integer token rows, K candidates per spectrum, N->C,
            padding 0 (or a zero-mass stop token, then padding) after the
            peptide (the beam's layout).
        mz: (B, N) observed peak m/z. intensity: (B, N) peak intensities >= 0.
        masses: (V,) float32 / float64 token masses in Da (``Vocabulary.mass_tensor()``)
            or the :class:`Vocabulary` the tokens index.
        peak_mask: (B, N) bool, True at real peaks (default: m/z != 0, zero padding).
        ion_types, charges, direction, distance, distance_scale, intensity_power:
            as :func:`peptide_losses.spectrum_matching_loss`; the defaults
            (:data:`SCORE_DEFAULTS`) differ in ``direction="both"``.
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.

    Returns:
        float32 scores in Da (or ppm): the
        per-spectrum loss of each candidate's exact residue masses. +inf for a
        candidate that cannot be scored (fewer than two residues: a row of only
        padding, or no real peak); NaN where a value is bad (the error model,
        :mod:`peptide_losses.checks`: a token outside the vocabulary, a residue
        after padding or a special token, a bad m/z or intensity at a real
        peak). No gradient, no host sync; runs inside CUDA graphs.
    """
    tokens = checked_tokens(tokens)
    batch, k, length = tokens.shape
    masses = checked_masses(masses, tokens.device)
    check_float("mz", mz, 2, precise=True)
    n_peaks = mz.shape[1]
    if mz.shape[0] != batch:
        raise ValueError(f"mz has {mz.shape[0]} spectra but tokens has {batch} (tokens is (B, K, L), mz (B, N))")
    check_float("intensity", intensity, 2)
    check_shape("intensity", intensity, (batch, n_peaks), "(B, N)")
    peak_mask = real_peaks(peak_mask, mz, [])
    if not (mz.device == intensity.device == peak_mask.device == tokens.device):
        check_same_device(tokens=tokens, mz=mz, intensity=intensity, peak_mask=peak_mask)
    options = spectrum_options(ion_types, charges, direction, distance, distance_scale, intensity_power, "none")
    # float32 masses: the kernel sums them in float64 anyway, and fragment m/z are float32 either way.
    residue_masses, mask = candidate_masses(tokens.reshape(batch * k, length), masses.to(torch.float32))
    if resolve_backend(backend, tokens.device) == "triton":
        from .kernels.common import cached_config
        from .kernels.spectrum import launch_config, spectrum_forward

        config = cached_config(launch_config, length, None, SCORE_BLOCK_N, SCORE_NUM_WARPS,
                               residue_masses.element_size(), residue_masses.is_contiguous())
        out = spectrum_forward(residue_masses, None, mask, mz, intensity, peak_mask, **options.loss_options(),
                               need_grad=False, rows_per_spectrum=k, config=config)
        loss, counted = out.losses, out.counted != 0
    else:
        loss, counted = reference.spectrum_matching_rows(
            residue_masses, mask, mz.repeat_interleave(k, 0), intensity.repeat_interleave(k, 0),
            peak_mask.repeat_interleave(k, 0), **options.loss_options())
    return torch.where(counted, loss, torch.inf).view(batch, k)


def shuffled_decoys(tokens: torch.Tensor, masses: torch.Tensor, count: int,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``count`` same-mass decoys per peptide: (B, count, L) random permutations of each row's
    residues (padding stays after them), none equal to the peptide position by position up to
    isobaric residues (within 1e-3 Da). A peptide with no such permutation (all residues of one
    mass) repeats itself; those rows say nothing about a scorer. For judging a scorer: the
    true peptide should score below every decoy of the same precursor mass."""
    batch, length = tokens.shape
    lengths = (tokens != 0).sum(1).tolist()
    table = masses.to(torch.float64).cpu()
    out = tokens.cpu()[:, None, :].repeat(1, count, 1)
    for b, n in enumerate(lengths):
        row = out[b, 0, :n].clone()
        for c in range(count):
            for _ in range(20):
                candidate = row[torch.randperm(n, generator=generator)]
                if ((table[candidate] - table[row]).abs() > 1e-3).any():
                    out[b, c, :n] = candidate
                    break
    return out.to(tokens.device)
