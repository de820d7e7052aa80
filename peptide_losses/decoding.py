"""Choosing among a beam's candidates with the precursor and the spectrum.

A de novo model scores its candidates by probability alone. Two checks it
does not make are cheap on finished peptides: whether the peptide's mass fits
the observed precursor (:func:`candidate_ppm`, Casanovo's demotion) and how
well its fragment ions explain the spectrum
(:func:`peptide_losses.scoring.spectrum_scores`). :func:`rerank` combines
them::

    combined = mean log-probability - 1[ppm > tolerance] - weight * spectrum score

``weight=0`` is the precursor-aware beam search of Casanovo; a positive weight
lets the spectrum decide among the mass-consistent candidates.
:func:`beam_search` is a model-agnostic beam search that keeps all K
candidates; any model's beam (Casanovo's ``top_match`` peptides, InstaNovo's
beams) can be reranked once its candidates are token rows
(:func:`peptide_losses.integrations.candidates.candidate_tokens`).

Token rows are N->C with padding (token 0) after the peptide; padding doubles
as the stop token. Bad values follow the error model of
:mod:`peptide_losses.checks`: a bad candidate's score is NaN, and a NaN is
never chosen.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch

from . import reference
from .checks import (check_float, check_integer, check_integer_tensor, check_number, check_same_device, check_shape,
                     choose)
from .constants import PROTON
from .options import precursor_options
from .scoring import candidate_masses, checked_masses, checked_tokens
from .vocabulary import Vocabulary


class Candidates(NamedTuple):
    """K candidate peptides per spectrum.

    Attributes:
        tokens: (B, K, L) int64 token rows, N->C, 0 after the peptide.
        log_prob: (B, K) float32 summed log-probability of each row's tokens,
            its stop token included (-inf for a beam that never came alive;
            NaN for every candidate of a spectrum whose model output was bad).
        finished: (B, K) bool, True where the candidate stopped within L
            (False where ``log_prob`` is NaN).
    """

    tokens: torch.Tensor
    log_prob: torch.Tensor
    finished: torch.Tensor

    def mean_log_prob(self) -> torch.Tensor:
        """(B, K) log-probability per token, the stop token counted (the beam's ranking)."""
        return mean_log_prob(self.tokens, self.log_prob, self.finished)


def mean_log_prob(tokens: torch.Tensor, log_prob: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
    """(B, K) summed ``log_prob`` per token of rows (B, K, L), a ``finished`` row's stop token counted."""
    return log_prob / ((tokens != 0).sum(-1) + finished).clamp_min(1)


class Choice(NamedTuple):
    """The chosen candidate per spectrum: ``tokens`` (B, L), its ``index`` (B,) in the beam and the
    ``combined`` (B, K) scores it was the argmax of, over their finite entries. A spectrum with no
    finite combined score has ``index`` -1 and a ``tokens`` row of padding (0)."""

    tokens: torch.Tensor
    index: torch.Tensor
    combined: torch.Tensor


@torch.no_grad()
def beam_search(next_log_probs: Callable[[torch.Tensor], torch.Tensor], batch_size: int, max_length: int,
                beam_size: int, device: torch.device | str = "cpu",
                guide: Callable[[torch.Tensor], torch.Tensor] | None = None,
                reorder: Callable[[torch.Tensor], None] | None = None,
                start_only: torch.Tensor | None = None, stop_check_every: int | None = 1) -> Candidates:
    """Beam search of an autoregressive model, keeping all ``beam_size`` candidates.

    Args:
        next_log_probs: ``prefix (B * K, t) int64 -> (B * K, V)`` log-probabilities
            (or logits: they are log-softmaxed) of the next token, for the rows of
            spectrum b at ``b * K .. b * K + K - 1``; token 0 stops a peptide.
        batch_size: B spectra. max_length: L positions. beam_size: K >= 1.
        device: where the token rows live.
        guide: optional ``prefix (B * K, t) -> (B * K, V)`` bonus of each next token
            (e.g. :func:`spectrum_guide`), summed along a candidate's path and added
            to its log-probability when the beam chooses which candidates to keep;
            the returned ``log_prob`` stays the model's.
        reorder: called after each step with the (B * K,) rows the beam kept, in
            their new order, so that a model's cached state (e.g.
            :class:`~peptide_losses.train.transformer.CachedDecoder`) follows them.
        start_only: optional (V,) bool, True at tokens that may only open a peptide
            (N-terminal modifications, :meth:`Vocabulary.start_only_mask`): no candidate
            holds one after position 0, whatever the model gives them there.
        stop_check_every: every this many steps the search asks whether every
            candidate has stopped, and ends if so; each ask waits for the device (a
            host sync). None: never ask, run all ``max_length`` steps. The candidates
            are the same either way: a stopped candidate only grows padding at no cost.

    Returns:
        :class:`Candidates`, ranked within each spectrum by summed log-probability
        (not by :meth:`~Candidates.mean_log_prob`: :func:`rerank` decides).
        A spectrum for which the model gave a bad value at any step, to a beam
        still running (NaN log-probabilities: NaN or +inf logits, or a row of
        only -inf; or a NaN guide bonus), is a bad row (:mod:`peptide_losses.checks`):
        its K candidates get ``log_prob`` NaN and ``finished`` False, whatever
        their tokens, so :func:`rerank` chooses none of them.
    """
    count = check_integer("batch_size", batch_size, 1)
    length = check_integer("max_length", max_length, 0)
    k = check_integer("beam_size", beam_size, 1)
    if stop_check_every is not None:
        check_integer("stop_check_every", stop_check_every, 1)
    for name, function in (("next_log_probs", next_log_probs), ("guide", guide), ("reorder", reorder)):
        if not callable(function) and (function is not None or name == "next_log_probs"):
            raise TypeError(f"{name} must be a function of the prefix (B * K, t), got {type(function).__name__}")
    tokens = torch.zeros(count * k, length, dtype=torch.long, device=device)
    # One live beam to start with: the others would only repeat it.
    scores = torch.full((count, k), -torch.inf, device=device)
    scores[:, 0] = 0.0
    bonus = torch.zeros(count, k, device=device)
    stopped = torch.zeros(count, k, dtype=torch.bool, device=device)
    bad = torch.zeros(count, dtype=torch.bool, device=device)
    vocab = None
    for t in range(length):
        logp = _step_output("next_log_probs", next_log_probs(tokens[:, :t]), count * k, vocab)
        if vocab is None:
            vocab = logp.shape[-1]
            if start_only is not None and (start_only.dtype != torch.bool or tuple(start_only.shape) != (vocab,)):
                raise ValueError(f"start_only must be a (V,) = ({vocab},) bool tensor, got {start_only.dtype} "
                                 f"{tuple(start_only.shape)}")
            # A stopped beam can only go on with padding, at no cost. (Built on the device: setting one
            # element from Python copies the value from the host, a sync inside the loop.)
            stay = torch.where(torch.arange(vocab, device=logp.device) == 0, 0.0, -torch.inf)
        logp = torch.where(stopped[..., None], stay, torch.log_softmax(logp, -1).view(count, k, vocab))
        if start_only is not None and t > 0:
            logp = logp.masked_fill(start_only, -torch.inf)
        step_bonus = 0.0
        if guide is not None:
            step = _step_output("guide", guide(tokens[:, :t]), count * k, vocab).view(count, k, vocab)
            step_bonus = torch.where(stopped[..., None], 0.0, step)
        path_logp = (scores[..., None] + logp).view(count, -1)
        path_bonus = (bonus[..., None] + step_bonus).expand(count, k, vocab).reshape(count, -1)
        ranked = path_logp + path_bonus
        # NaN would rank first in topk: it marks its spectrum bad and ranks last.
        nan = ranked.isnan()
        bad |= nan.any(1)
        index = torch.where(nan, -torch.inf, ranked).topk(k, dim=1).indices
        scores, bonus = path_logp.gather(1, index), path_bonus.gather(1, index)
        beam, token = index // vocab, index % vocab
        rows = (beam + torch.arange(count, device=device)[:, None] * k).view(-1)
        tokens = tokens[rows]
        tokens[:, t] = token.view(-1)
        if reorder is not None:
            reorder(rows)
        stopped = stopped.gather(1, beam) | (token == 0)
        if stop_check_every is not None and (t + 1) % stop_check_every == 0 and bool((stopped | bad[:, None]).all()):
            break
    return Candidates(tokens.view(count, k, length), torch.where(bad[:, None], torch.nan, scores),
                      stopped & ~bad[:, None])


def _step_output(name: str, out, rows: int, vocab: int | None) -> torch.Tensor:
    """A step's (B * K, V) float output of ``next_log_probs`` or ``guide``, as float32; errors name ``name``."""
    check_float(f"{name}(prefix)", out, 2)
    expected = (rows, out.shape[1] if vocab is None else vocab)
    check_shape(f"{name}(prefix)", out, expected, "(B * K, V)")
    if expected[1] == 0:
        raise ValueError(f"{name}(prefix) must score at least token 0 (the stop token), got shape {tuple(out.shape)}")
    return out.float()


def spectrum_guide(mz: torch.Tensor, intensity: torch.Tensor, peak_mask: torch.Tensor, precursor_mz: torch.Tensor,
                   charge: torch.Tensor, masses: torch.Tensor, beam_size: int, *, weight: float = 1.0,
                   distance_scale: float = 0.005, reach: float = 0.05) -> Callable[[torch.Tensor], torch.Tensor]:
    """A :func:`beam_search` guide: how well the next residue's b ion and its complementary y ion
    (precursor mass minus the prefix: known before the rest of the peptide) fall on peaks.

    For a prefix of mass P and a next residue of mass m, the singly charged b ion
    ``P + m + proton`` and y ion ``M - P - m + proton`` (M the precursor's neutral
    mass) are looked up among the sorted peaks; each earns
    ``weight * (f(reach) - f(min(d, reach)))`` with ``f(d) = tau * log1p(d / tau)``
    and d its distance (Da) to the nearest real peak, normalised so that a hit
    earns ``weight`` and anything beyond ``reach`` Da nothing. The stop token earns 0.

    Args:
        mz, intensity, peak_mask: (B, N) the spectra; precursor_mz (B,), charge (B,).
        masses: (V,) token masses in Da. beam_size: K of the search it guides.
    """
    k = beam_size
    peaks = torch.where(peak_mask, mz.to(torch.float64), torch.inf).sort(-1).values
    neutral = (precursor_mz.to(torch.float64) - PROTON) * charge.to(torch.float64)
    table = masses.to(torch.float64)
    tau = distance_scale
    full = tau * torch.log1p(torch.tensor(reach / tau, dtype=torch.float64))

    def earned(ions: torch.Tensor) -> torch.Tensor:
        n = peaks.shape[1]
        if n == 0:
            return torch.zeros_like(ions)
        index = torch.searchsorted(peaks, ions.contiguous())
        above, below = peaks.gather(1, index.clamp_max(n - 1)), peaks.gather(1, (index - 1).clamp_min(0))
        # Padding sorts last as +inf: infinitely far, so it earns nothing.
        near = torch.minimum((above - ions).abs(), (below - ions).abs()).nan_to_num(nan=reach).clamp_max(reach)
        return (full - tau * torch.log1p(near / tau)) / full

    def guide(prefix: torch.Tensor) -> torch.Tensor:
        rows, vocab = prefix.shape[0], table.shape[0]
        prefix_mass = table[prefix].sum(-1).view(-1, k, 1)
        after = prefix_mass + table.view(1, 1, vocab)
        b_ions = (after + PROTON).view(-1, k * vocab)
        y_ions = (neutral.view(-1, 1, 1) - after + PROTON).view(-1, k * vocab)
        bonus = weight * (earned(b_ions) + earned(y_ions)).view(rows, vocab)
        return torch.where(torch.arange(vocab, device=prefix.device) == 0, 0.0, bonus)

    return guide


def candidate_ppm(tokens: torch.Tensor, masses: torch.Tensor | Vocabulary, precursor_mz: torch.Tensor,
                  charge: torch.Tensor, isotope_errors: Sequence[int] = (0,)) -> torch.Tensor:
    """(B, K) precursor error in ppm of candidate token rows, the smallest over ``isotope_errors``.

    Args:
        tokens: (B, K, L) integer token rows, as :func:`peptide_losses.spectrum_scores` takes them.
        masses: (V,) float32 / float64 token masses in Da, or the :class:`Vocabulary`.
        precursor_mz: (B,) float32 / float64 observed precursor m/z. charge: (B,) integer charge.
        isotope_errors: a non-empty sequence of integers k >= 0, as :func:`peptide_losses.precursor_mass_loss`.

    NaN where a value is bad (:mod:`peptide_losses.checks`): a token outside
    the vocabulary, a residue after the peptide's end, a precursor m/z not
    finite or <= 0, a charge < 1. Argument errors name the argument.
    """
    tokens = checked_tokens(tokens)
    batch, k, length = tokens.shape
    masses = checked_masses(masses, tokens.device)
    check_float("precursor_mz", precursor_mz, 1, precise=True)
    check_shape("precursor_mz", precursor_mz, (batch,), "(B,)")
    check_integer_tensor("charge", charge, "(B,)")
    check_shape("charge", charge, (batch,), "(B,)")
    check_same_device(tokens=tokens, precursor_mz=precursor_mz, charge=charge)
    isotope_errors = precursor_options(1.0, isotope_errors, "none").isotope_errors
    residue_masses, mask = candidate_masses(tokens.reshape(batch * k, length), masses)
    return reference.precursor_ppm(residue_masses, mask, precursor_mz.repeat_interleave(k),
                                   charge.repeat_interleave(k), isotope_errors=isotope_errors).view(batch, k)


def rerank(tokens: torch.Tensor, model_scores: torch.Tensor, *, precursor_ppm: torch.Tensor | None = None,
           tolerance_ppm: float = 20.0, spectrum_scores: torch.Tensor | None = None, weight: float = 0.0) -> Choice:
    """The best candidate per spectrum by ``model score - 1[ppm > tolerance] - weight * spectrum score``.

    Args:
        tokens: (B, K, L) integer candidate token rows (:attr:`Candidates.tokens`, or
            another model's beam as token rows).
        model_scores: (B, K) float, the model's score of each candidate, higher is better
            (:meth:`Candidates.mean_log_prob`; Casanovo's peptide score); -inf for an
            empty beam slot.
        precursor_ppm: (B, K) float ppm errors (:func:`candidate_ppm`); None: no demotion.
            A NaN ppm (a bad precursor or candidate) counts as outside the tolerance.
        tolerance_ppm: a number >= 0 (inf: no demotion); candidates farther than
            this from the precursor lose 1.
        spectrum_scores: (B, K) float :func:`peptide_losses.spectrum_scores` (lower is
            better); required when ``weight`` is not 0.
        weight: a finite number, per Da (or ppm) of spectrum score; 0 ignores the
            spectrum (a candidate's +inf or NaN score then does not matter).

    Returns:
        :class:`Choice`. A candidate whose combined score is not finite (NaN: a
        bad value in its model, precursor or spectrum score; -inf: an empty slot
        or an unscorable candidate) is never chosen: a spectrum with no finite
        combined score gets ``index`` -1 and an all-padding (0) ``tokens`` row.
        No host sync.
    """
    tokens = checked_tokens(tokens)
    shape = tuple(tokens.shape[:2])
    if shape[1] == 0:
        raise ValueError(f"tokens must hold at least one candidate per spectrum (K >= 1), got shape "
                         f"{tuple(tokens.shape)}")
    check_number("tolerance_ppm", tolerance_ppm, lambda x: x >= 0, "a number >= 0 (inf: no demotion)")
    check_number("weight", weight, math.isfinite, "a finite number")
    scores = {"model_scores": model_scores, "precursor_ppm": precursor_ppm, "spectrum_scores": spectrum_scores}
    for name, value in scores.items():
        if value is not None or name == "model_scores":  # the other two are optional
            check_float(name, value, 2)
            check_shape(name, value, shape, "(B, K)")
    check_same_device(tokens=tokens, **scores)
    combined = model_scores.float()
    if precursor_ppm is not None:
        combined = combined - (~(precursor_ppm <= tolerance_ppm)).to(combined.dtype)
    if weight:
        if spectrum_scores is None:
            raise ValueError(f"weight={weight} needs spectrum_scores (B, K)")
        combined = combined - weight * spectrum_scores.to(combined.dtype)
    index = choose(combined)
    rows = tokens[torch.arange(len(index), device=index.device), index.clamp_min(0)]
    return Choice(torch.where(index[:, None] >= 0, rows, 0), index, combined)
