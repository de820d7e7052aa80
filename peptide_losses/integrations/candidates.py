"""Another model's beam as token rows, for :func:`~peptide_losses.spectrum_scores` and :func:`~.decoding.rerank`.

A tool's beam search hands back peptides as names; the scorer and the
reranker take K candidates per spectrum as (B, K, L) token rows, N->C, padding
0 after the peptide. :func:`candidate_tokens` converts the one into the other
in the model's own vocabulary, :func:`candidate_scores` puts the model's scores
beside them. Neither imports a tool. What the tools return (README, "Rerank
your model's beam by the spectrum"):

- Casanovo 5.2.1, ``Spec2Pep(n_beams=K, top_match=K)``, ``model(batch)``: per
  spectrum a list of at most K tuples ``(peptide_score, aa_scores, sequence)``,
  best first; ``sequence`` is a ``str`` of the tokenizer's token names N->C
  (its detokenizer flips the reversed order back), without the stop token
  ``$``, e.g. ``"[Acetyl]-PEPC[Carbamidomethyl]K"``; ``peptide_score`` the
  product of the token probabilities, stop token included. A spectrum whose
  beams never finished gets ``[]``.
- InstaNovo 1.2.2, ``BeamSearchDecoder(model).decode(..., beam_size=K,
  return_beam=True)``: a dict whose ``predictions_beam_{k}`` lists, per
  spectrum, the k-th candidate as a ``str`` of joined token names N->C (an
  N-terminal modification first, without a dash: ``"[UNIMOD:1]PEPC[UNIMOD:4]K"``),
  and ``predictions_log_probability_beam_{k}`` its summed log-probability;
  a spectrum with fewer than K candidates gets ``""`` and -inf there.
  ``predictions`` holds the best candidate as a list of token names.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from ..checks import check_integer, check_number, check_sequence
from ..vocabulary import Vocabulary


class CandidateRows(NamedTuple):
    """K candidates per spectrum as token rows.

    Attributes:
        tokens: (B, K, L) int64 indices into the vocabulary, N->C, padding 0
            after the peptide; an empty slot is all padding.
        present: (B, K) bool, False at empty slots (a spectrum with fewer than
            K candidates, or an empty peptide such as InstaNovo's ``""``).
    """

    tokens: torch.Tensor
    present: torch.Tensor


def _encode(peptide: str | Sequence[str], vocabulary: Vocabulary, where: str) -> list[int]:
    """Token indices of one candidate; ValueError naming ``where`` for a token the vocabulary lacks."""
    if not isinstance(peptide, str):
        peptide = check_sequence(where, peptide, "a peptide string or a sequence of token names")
        if not all(isinstance(name, str) for name in peptide):
            raise TypeError(f"{where} must be a peptide string or a sequence of token names (str), got {peptide!r}")
    try:
        names = vocabulary.tokenize(peptide) if isinstance(peptide, str) else peptide
        indices = [vocabulary.index(name) for name in names]
    except ValueError as error:
        raise ValueError(f"{where} = {peptide!r}: {error}") from None
    for name in names:
        # A stop, start or padding token would count as a zero-mass residue.
        if vocabulary.is_special(name):
            raise ValueError(f"{where} = {peptide!r}: {name!r} is a special token (stop, start or padding), "
                             "not a residue; give the peptide without it")
    return indices


def candidate_tokens(peptides: Sequence[Sequence[str | Sequence[str]]], vocabulary: Vocabulary, *,
                     max_length: int | None = None, beam_size: int | None = None,
                     device: torch.device | str | None = None) -> CandidateRows:
    """Token rows of each spectrum's candidate peptides, in ``vocabulary``'s indices.

    Args:
        peptides: per spectrum (B of them) its candidates, best first as the
            tool ranks them; each a peptide string in the vocabulary's notation
            (:meth:`Vocabulary.tokenize`: Casanovo's and InstaNovo's strings) or
            a sequence of token names, N->C. ``""`` or ``[]`` is an empty slot.
        vocabulary: the model's (``Vocabulary.from_casanovo(model.tokenizer)``,
            ``Vocabulary.from_instanovo(model.residue_set)``).
        max_length: L >= 0, default the longest candidate's token count.
        beam_size: K >= 1, default the most candidates of any spectrum (at least 1).
        device: where the rows go (the spectra's device), default the CPU.

    Returns:
        :class:`CandidateRows`, candidate k of spectrum b at ``[b, k]``.

    Raises:
        ValueError naming ``peptides[b][k]`` and the token, for a token the
        vocabulary lacks or a special token; naming the spectrum or candidate
        that holds more than ``beam_size`` candidates or ``max_length`` tokens.
        TypeError naming the argument that is not what it must be: ``peptides``,
        ``peptides[b]`` (a string instead of a list of candidates, None),
        ``peptides[b][k]``, ``vocabulary``; TypeError / ValueError naming
        ``beam_size`` or ``max_length`` if not an integer in range.
    """
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary (the model's), got {type(vocabulary).__name__}")
    beams = check_sequence("peptides", peptides, "a list per spectrum of its candidates, e.g. [['PEPK'], ['ACDK']]")
    rows = []
    for b, beam in enumerate(beams):
        if isinstance(beam, str):
            raise TypeError(f"peptides[{b}] is a str ({beam!r}): peptides is a list per spectrum of its "
                            "candidates, e.g. [['PEPK', 'PEKP'], ['ACDK']]")
        beam = check_sequence(f"peptides[{b}]", beam, "a list of candidate peptides")
        rows.append([_encode(peptide, vocabulary, f"peptides[{b}][{k}]") for k, peptide in enumerate(beam)])
    k = check_integer("beam_size", beam_size, 1) if beam_size is not None else max([1, *map(len, rows)])
    length = (check_integer("max_length", max_length, 0) if max_length is not None
              else max([0, *(len(row) for beam in rows for row in beam)]))
    tokens = torch.zeros(len(rows), k, length, dtype=torch.long)
    for b, beam in enumerate(rows):
        if len(beam) > k:
            raise ValueError(f"peptides[{b}] has {len(beam)} candidates, more than beam_size={k}")
        for c, row in enumerate(beam):
            if len(row) > length:
                raise ValueError(f"peptides[{b}][{c}] has {len(row)} tokens, more than max_length={length}")
            tokens[b, c, :len(row)] = torch.tensor(row, dtype=torch.long)
    tokens = tokens.to(device)
    return CandidateRows(tokens, (tokens != 0).any(-1))


def candidate_scores(scores: Sequence[Sequence[float]], present: torch.Tensor) -> torch.Tensor:
    """The model's scores of the candidates, (B, K) float32, -inf at empty slots: ``rerank``'s ``model_scores``.

    Args:
        scores: per spectrum the model's score of each candidate (higher is
            better), in the order given to :func:`candidate_tokens`: Casanovo's
            ``peptide_score``, InstaNovo's ``predictions_log_probability_beam_{k}``.
        present: (B, K) bool, :attr:`CandidateRows.present`; the scores go to its device.

    A NaN score is a bad value (:mod:`peptide_losses.checks`): it stays NaN,
    and :func:`~peptide_losses.decoding.rerank` never chooses it.

    Raises:
        ValueError naming ``scores[b]`` if it has more than K scores or fewer
        than its spectrum's candidates, or if ``scores`` has not B rows;
        TypeError naming ``scores``, ``scores[b]`` or ``scores[b][k]`` where
        it is not a list (of numbers), or ``present`` if not a (B, K) bool tensor.
    """
    if not isinstance(present, torch.Tensor) or present.dtype != torch.bool:
        raise TypeError(f"present must be a bool torch.Tensor (B, K) (CandidateRows.present), "
                        f"got {getattr(present, 'dtype', type(present).__name__)}")
    if present.dim() != 2:
        raise ValueError(f"present must be (B, K), got shape {tuple(present.shape)}")
    batch, k = present.shape
    device, present = present.device, present.cpu()
    scores = check_sequence("scores", scores, "a list per spectrum of its candidates' scores")
    if len(scores) != batch:
        raise ValueError(f"scores has {len(scores)} spectra but present has {batch} (present is (B, K))")
    out = torch.full((batch, k), -torch.inf)
    for b, row in enumerate(scores):
        row = [check_number(f"scores[{b}][{j}]", score, lambda x: True, "a number")
               for j, score in enumerate(check_sequence(f"scores[{b}]", row, "a list of numbers"))]
        if len(row) > k or present[b, len(row):].any():
            raise ValueError(f"scores[{b}] has {len(row)} scores for {int(present[b].sum())} candidates "
                             f"in {k} slots (present[{b}] = {present[b].tolist()})")
        out[b, :len(row)] = torch.tensor(row)
    return out.masked_fill(~present, -torch.inf).to(device)
