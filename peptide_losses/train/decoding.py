"""Peptides from a trained model: greedy decoding, and a beam search whose candidates the
precursor and the spectrum choose among (:mod:`peptide_losses.decoding`).

Each decoding gives token rows (B, L), N->C, padding (0) after the peptide, the
layout of :attr:`~peptide_losses.spectra.SpectrumBatch.tokens`, so the same
metrics score them. A non-autoregressive model (:class:`~.model.TinyRecursiveModel`)
predicts all positions at once: its decoding is the argmax of its last logits.
"""

from __future__ import annotations

import torch

from ..decoding import Candidates, beam_search, candidate_ppm, rerank, spectrum_guide
from ..scoring import spectrum_scores
from ..spectra import SpectrumBatch
from .config import DecodingConfig
from .model import unwrap


@torch.no_grad()
def greedy(model, batch: SpectrumBatch) -> torch.Tensor:
    """The most probable token at each step until every peptide has stopped: (B, L) tokens."""
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        return model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)[-1].argmax(-1)
    decoder = model.cached_decoder(*model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz,
                                                 batch.charge))
    tokens = torch.zeros(len(batch), model.max_length, dtype=torch.long, device=batch.mz.device)
    stopped = torch.zeros(len(batch), dtype=torch.bool, device=batch.mz.device)
    for t in range(model.max_length):
        step = decoder(tokens[:, :t]).argmax(-1)
        tokens[:, t] = torch.where(stopped, 0, step)
        stopped |= step == 0
        if bool(stopped.all()):
            break
    return tokens


@torch.no_grad()
def beam_candidates(model, batch: SpectrumBatch, beam_size: int, guide_weight: float | None = None) -> Candidates:
    """All ``beam_size`` candidates of the model's beam search (:func:`peptide_losses.decoding.beam_search`,
    one cached decoder step per token); ``guide_weight``: guided by
    :func:`peptide_losses.decoding.spectrum_guide` of that weight."""
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        raise ValueError("beam search needs an autoregressive model (model.kind 'transformer')")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    encoded = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    decoder = model.cached_decoder(*encoded, repeats=beam_size)
    guide = None
    if guide_weight is not None:
        guide = spectrum_guide(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge,
                               batch.vocabulary.mass_tensor(device=batch.mz.device), beam_size, weight=guide_weight)
    return beam_search(decoder, len(batch), model.max_length, beam_size, batch.mz.device, guide=guide,
                       reorder=decoder.reorder)


@torch.no_grad()
def beam_decodings(model, batch: SpectrumBatch, settings: DecodingConfig, isotope_errors) -> dict[str, torch.Tensor]:
    """(B, L) tokens of the beam's two choices: ``precursor_beam`` (precursor demotion alone) and
    ``spectrum_rerank`` (also ``settings.spectrum_weight`` x :func:`peptide_losses.spectrum_scores`)."""
    candidates = beam_candidates(model, batch, settings.beam_size, settings.guide_weight)
    masses = batch.vocabulary.mass_tensor(device=batch.mz.device)
    ppm = candidate_ppm(candidates.tokens, masses, batch.precursor_mz, batch.charge, isotope_errors)
    tolerance = settings.precursor_tolerance_ppm
    scores = spectrum_scores(candidates.tokens, batch.mz, batch.intensity, masses=masses, peak_mask=batch.peak_mask,
                             **vars(settings.spectrum))
    model_scores = candidates.mean_log_prob()
    return {"precursor_beam": rerank(candidates.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=tolerance).tokens,
            "spectrum_rerank": rerank(candidates.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=tolerance,
                                      spectrum_scores=scores, weight=settings.spectrum_weight).tokens}
