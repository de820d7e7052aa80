"""Peptides from a trained model: greedy decoding, and beam search that knows the precursor.

Both return token rows (B, L), N->C, padding (0) after the peptide, the layout
of :attr:`~peptide_losses.spectra.SpectrumBatch.tokens`, so the same metrics
score them. A non-autoregressive model (:class:`~.model.TinyRecursiveModel`)
predicts all positions at once: its decoding is the argmax of its last logits.

Precursor-aware beam search follows Casanovo: the beams are ranked by their
mean log-probability per token (the stop token included), and a finished
peptide whose precursor m/z is farther than the tolerance from the observed one
(at every allowed isotope error) has 1 subtracted from that score, so a
mass-consistent candidate wins whenever the beam holds one.
"""

from __future__ import annotations

import torch

from ..spectra import SpectrumBatch
from .metrics import ppm_errors
from .model import unwrap


@torch.no_grad()
def greedy(model, batch: SpectrumBatch) -> torch.Tensor:
    """The most probable token at each step until every peptide has stopped: (B, L) tokens."""
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        return model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)[-1].argmax(-1)
    memory, padding, start = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    tokens = torch.zeros(len(batch), model.max_length, dtype=torch.long, device=memory.device)
    stopped = torch.zeros(len(batch), dtype=torch.bool, device=memory.device)
    for t in range(model.max_length):
        step = model.decode(memory, padding, start, tokens[:, :t])[:, -1].argmax(-1)
        tokens[:, t] = torch.where(stopped, 0, step)
        stopped |= step == 0
        if bool(stopped.all()):
            break
    return tokens


@torch.no_grad()
def beam_search(model, batch: SpectrumBatch, beam_size: int, tolerance_ppm: float | None,
                isotope_errors=(0,)) -> torch.Tensor:
    """Beam search over ``beam_size`` candidates per spectrum: (B, L) tokens of the best.

    Args:
        model: an autoregressive model (:class:`~.transformer.PeptideTransformer`).
        batch: the spectra.
        beam_size: candidates kept per spectrum (1 is greedy).
        tolerance_ppm: candidates whose precursor error (ppm, the smallest over
            ``isotope_errors``) exceeds it are demoted; None ranks by probability alone.
        isotope_errors: allowed +k 13C isotope picks of the observed precursor.
    """
    model = unwrap(model)
    if not getattr(model, "autoregressive", False):
        raise ValueError("beam search needs an autoregressive model (model.kind 'transformer')")
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    memory, padding, start = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    count, k, length = len(batch), beam_size, model.max_length
    memory, padding, start = (x.repeat_interleave(k, 0) for x in (memory, padding, start))
    device = memory.device
    tokens = torch.zeros(count * k, length, dtype=torch.long, device=device)
    # One live beam to start with: the others would only repeat it.
    scores = torch.full((count, k), -torch.inf, device=device)
    scores[:, 0] = 0.0
    stopped = torch.zeros(count, k, dtype=torch.bool, device=device)
    stay = None
    for t in range(length):
        logp = torch.log_softmax(model.decode(memory, padding, start, tokens[:, :t])[:, -1].float(), -1)
        logp = logp.view(count, k, -1)
        if stay is None:
            # A stopped beam can only go on with padding, at no cost.
            stay = torch.full_like(logp[0, 0], -torch.inf)
            stay[0] = 0.0
        logp = torch.where(stopped[..., None], stay, logp)
        vocab = logp.shape[-1]
        scores, index = (scores[..., None] + logp).view(count, -1).topk(k, dim=1)
        beam, token = index // vocab, index % vocab
        rows = (beam + torch.arange(count, device=device)[:, None] * k).view(-1)
        tokens = tokens[rows]
        tokens[:, t] = token.view(-1)
        stopped = stopped.gather(1, beam) | (token == 0)
        if bool(stopped.all()):
            break
    residues = (tokens != 0).sum(1).view(count, k)
    ranked = scores / (residues + stopped).clamp_min(1)
    if tolerance_ppm is not None:
        masses = batch.vocabulary.mass_tensor(device=device)
        ppm = ppm_errors(tokens, masses, batch.precursor_mz.repeat_interleave(k), batch.charge.repeat_interleave(k),
                         isotope_errors).view(count, k)
        ranked = ranked - (ppm > tolerance_ppm).to(ranked.dtype)
    best = ranked.argmax(1)
    return tokens.view(count, k, length)[torch.arange(count, device=device), best]
