"""Peptides from a trained model: greedy decoding, and a beam search whose candidates the
precursor and the spectrum choose among (:mod:`peptide_losses.decoding`).

Each decoding gives token rows (B, L), N->C, padding (0) after the peptide, the
layout of :attr:`~peptide_losses.spectra.SpectrumBatch.tokens`, so the same
metrics score them. A non-autoregressive model (:class:`~.model.TinyRecursiveModel`)
predicts all positions at once: its decoding is the argmax of its last logits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..decoding import Candidates, beam_search, candidate_ppm, rerank, spectrum_guide
from ..scoring import spectrum_scores
from ..spectra import SpectrumBatch
from .config import DecodingConfig
from .models import unwrap


@torch.no_grad()
def greedy(model, batch: SpectrumBatch) -> torch.Tensor:
    """The most probable token at each step until every peptide has stopped, an N-terminal modification
    only at position 0: (B, L) tokens."""
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        return model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)[-1].argmax(-1)
    decoder = model.cached_decoder(*model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz,
                                                 batch.charge))
    tokens = torch.zeros(len(batch), model.max_length, dtype=torch.long, device=batch.mz.device)
    stopped = torch.zeros(len(batch), dtype=torch.bool, device=batch.mz.device)
    start_only = batch.vocabulary.start_only_mask(device=batch.mz.device)
    for t in range(model.max_length):
        logits = decoder(tokens[:, :t])
        step = (logits.masked_fill(start_only, -torch.inf) if t else logits).argmax(-1)
        tokens[:, t] = torch.where(stopped, 0, step)
        stopped |= step == 0
        if bool(stopped.all()):
            break
    return tokens


@torch.no_grad()
def beam_candidates(model, batch: SpectrumBatch, beam_size: int, guide_weight: float | None = None,
                    stop_check_every: int | None = 1, encoded: tuple | None = None) -> Candidates:
    """All ``beam_size`` candidates of the model's beam search (:func:`peptide_losses.decoding.beam_search`,
    one cached decoder step per token, N-terminal modifications only at position 0); ``guide_weight``:
    guided by :func:`peptide_losses.decoding.spectrum_guide` of that weight; ``stop_check_every`` as there;
    ``encoded``: ``model.encode``'s output for ``batch`` where the caller has it (else encoded here)."""
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        raise ValueError("beam search needs an autoregressive model (model.kind 'transformer')")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if encoded is None:
        encoded = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    decoder = model.cached_decoder(*encoded, repeats=beam_size)
    guide = None
    if guide_weight is not None:
        guide = spectrum_guide(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge,
                               batch.vocabulary.mass_tensor(device=batch.mz.device), beam_size, weight=guide_weight)
    return beam_search(decoder, len(batch), model.max_length, beam_size, batch.mz.device, guide=guide,
                       reorder=decoder.reorder, start_only=batch.vocabulary.start_only_mask(device=batch.mz.device),
                       stop_check_every=stop_check_every)


class ScoredBeam(NamedTuple):
    """A beam's :class:`~peptide_losses.decoding.Candidates` and, (B, K) each, their precursor ``ppm``
    (the smallest over the isotope errors) and :func:`peptide_losses.spectrum_scores` (``spectrum``, Da)."""

    candidates: Candidates
    ppm: torch.Tensor
    spectrum: torch.Tensor


@torch.no_grad()
def scored_beam(model, batch: SpectrumBatch, settings: DecodingConfig, isotope_errors, *, beam_size: int | None = None,
                guided: bool = True, backend: str = "auto", stop_check_every: int | None = 1) -> ScoredBeam:
    """The model's beam of ``beam_size`` (default ``settings.beam_size``), spectrum-guided by
    ``settings.guide_weight`` when ``guided``, with the evidence :func:`~peptide_losses.decoding.rerank`
    weighs; ``backend`` of the spectrum scores; ``stop_check_every`` as in
    :func:`peptide_losses.decoding.beam_search`."""
    candidates = beam_candidates(model, batch, settings.beam_size if beam_size is None else beam_size,
                                 settings.guide_weight if guided else None, stop_check_every)
    return ScoredBeam(candidates, *candidate_evidence(candidates.tokens, batch, settings, isotope_errors, backend))


def candidate_evidence(tokens: torch.Tensor, batch: SpectrumBatch, settings: DecodingConfig, isotope_errors,
                       backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K) precursor ppm (the smallest over ``isotope_errors``) and (B, K) spectrum scores (Da, with
    ``settings.spectrum``'s options, by ``backend``) of candidate token rows (B, K, L) of ``batch``."""
    masses = batch.vocabulary.mass_tensor(device=batch.mz.device)
    ppm = candidate_ppm(tokens, masses, batch.precursor_mz, batch.charge, isotope_errors)
    scores = spectrum_scores(tokens, batch.mz, batch.intensity, masses=masses, peak_mask=batch.peak_mask,
                             backend=backend, **vars(settings.spectrum))
    return ppm, scores


@torch.no_grad()
def beam_decodings(model, batch: SpectrumBatch, settings: DecodingConfig, isotope_errors,
                   backend: str = "auto") -> dict[str, torch.Tensor]:
    """(B, L) tokens of the beam's two choices: ``precursor_beam`` (precursor demotion alone) and
    ``spectrum_rerank`` (also ``settings.spectrum_weight`` x :func:`peptide_losses.spectrum_scores`)."""
    beam = scored_beam(model, batch, settings, isotope_errors, backend=backend)
    tokens, model_scores = beam.candidates.tokens, beam.candidates.mean_log_prob()
    tolerance = settings.precursor_tolerance_ppm
    return {"precursor_beam": rerank(tokens, model_scores, precursor_ppm=beam.ppm, tolerance_ppm=tolerance).tokens,
            "spectrum_rerank": rerank(tokens, model_scores, precursor_ppm=beam.ppm, tolerance_ppm=tolerance,
                                      spectrum_scores=beam.spectrum, weight=settings.spectrum_weight).tokens}
