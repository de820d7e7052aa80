"""De novo peptides for spectra from a trained checkpoint: the model, its decoding, ranked PSMs.

:func:`load_sequencer` reads a checkpoint written by the trainer (``last.pt`` or the
bf16 ``compact.pt``; the default is the GPU preset's, shipped in
``peptide_losses/checkpoints/``). :meth:`Sequencer.sequence` decodes batches of
spectra with one of :data:`DECODINGS` and returns, per spectrum, its candidates
ranked by the decoding's combined score (:func:`peptide_losses.decoding.rerank`),
higher = better:

- ``judge``: the ``default`` beam, its candidates chosen and scored by the checkpoint's
  :class:`~peptide_losses.judge.Judge` (``<checkpoint stem>.judge.json`` beside it, or one
  given): the score is P(correct);
- ``default``: the trainer's validation decoding, a spectrum-guided beam reranked by
  ``mean log-probability - 1[ppm > tolerance] - spectrum_weight * spectrum score``;
- ``precursor-beam``: an unguided beam, ranked by ``mean log-probability - 1[ppm > tolerance]``;
- ``greedy``: the most probable token at each step (a beam of one), scored by its mean
  log-probability.

A candidate that did not finish within the model's ``max_length`` tokens, or holds no
residue, is no peptide and is never returned; nor is any candidate of a spectrum left without
a peak by the preprocessing, or of one whose precursor outweighs ``max_length`` of the heaviest
token (:meth:`Sequencer.reachable`). A spectrum left with none has no PSM.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import torch

from .constants import PROTON
from .decoding import rerank
from .features import Beam, candidate_features
from .judge import Judge, judge_path
from .predicted_intensity import source_correlations
from .spectra import Spectrum, SpectrumBatch, collate
from .vocabulary import Vocabulary

DEFAULT_CHECKPOINT = Path(__file__).resolve().with_name("checkpoints") / "gpu_preset.pt"
DECODINGS = ("judge", "default", "precursor-beam", "greedy")
#: Da above ``max_length`` heaviest tokens that a precursor may weigh and still be decoded: isotope
#: errors (a few times 1.00335 Da) and the precursor tolerance.
REACH_SLACK_DA = 5.0


class CheckpointError(ValueError):
    """A file that is not a usable peptide_losses checkpoint; the message names it."""


class Candidate(NamedTuple):
    """One ranked candidate of a spectrum.

    Attributes:
        tokens: the peptide's token indices, N->C. score: the decoding's combined score
        (higher = better). log_prob: mean log-probability per token (the stop token
        counted). ppm: precursor error in ppm, the smallest over the isotope errors.
        spectrum_score: :func:`peptide_losses.spectrum_scores` (Da, lower = better).
    """

    tokens: list[int]
    score: float
    log_prob: float
    ppm: float
    spectrum_score: float


class Scores(NamedTuple):
    """(B, K) per candidate: the decoding's ``combined`` score (-inf for an unfinished candidate),
    the mean ``log_prob``, the precursor ``ppm`` and the ``spectrum`` score (Da)."""

    combined: torch.Tensor
    log_prob: torch.Tensor
    ppm: torch.Tensor
    spectrum: torch.Tensor


@dataclasses.dataclass
class Sequencer:
    """A trained model with its vocabulary and decoding settings, on ``device``."""

    model: torch.nn.Module
    config: object  # peptide_losses.train.config.TrainConfig
    vocabulary: Vocabulary
    device: torch.device
    backend: str = "auto"  # of the spectrum scores (peptide_losses.checks.BACKENDS)
    judge: Judge | None = None
    # How often the beam asks whether all candidates stopped (peptide_losses.decoding.beam_search);
    # "auto": never on a GPU, where each ask is a host sync (H200: K=5 1,823 spectra/s against 1,632
    # asking every step, K=20 571 against 558; benchmarks/results/nvidia-h200/throughput.md), every
    # step on the CPU, where asking is free and stopping early saves steps.
    stop_check_every: int | None | str = "auto"

    @property
    def max_length(self) -> int:
        return self.config.max_length

    def batch(self, spectra: Sequence[Spectrum]) -> SpectrumBatch:
        # The annotation plays no part in decoding: a too-long SEQ= must not stop a spectrum.
        spectra = [dataclasses.replace(s, tokens=None) for s in spectra]
        # At least one peak column (padding) where no spectrum has a peak: the encoder's attention needs one.
        peaks = max(1, max(len(s.mz) for s in spectra))
        return collate(spectra, self.vocabulary, max_length=self.max_length, max_peaks=peaks).to(self.device)

    @property
    def default_decoding(self) -> str:
        """``judge`` where the checkpoint has one, else ``default``."""
        return "judge" if self.judge is not None else "default"

    @torch.no_grad()
    def beam(self, batch: SpectrumBatch, beam_size: int | None = None, guided: bool = True) -> Beam:
        """The model's beam with the evidence the decodings weigh (:class:`~peptide_losses.features.Beam`)."""
        from .train.decoding import scored_beam

        scored = scored_beam(self.model, batch, self.config.decoding, self.config.losses.precursor.isotope_errors,
                             beam_size=beam_size, guided=guided, backend=self.backend,
                             stop_check_every=self.stop_check_interval(batch))
        found = scored.candidates
        # A spectrum without a peak (none left by the preprocessing) has nothing to read a peptide from.
        valid = (found.finished & self.is_peptide(found.tokens) & batch.peak_mask.any(-1, keepdim=True)
                 & self.reachable(batch)[:, None])
        return Beam(found.tokens, found.log_prob, valid, scored.ppm, scored.spectrum)

    def reachable(self, batch: SpectrumBatch) -> torch.Tensor:
        """(B,) bool: the precursor's neutral mass is one the model's ``max_length`` tokens can weigh (at
        most that many of the heaviest, plus :data:`REACH_SLACK_DA`). Beyond it no candidate can be the
        peptide: the beam would return the nearest wrong one, thousands of ppm off."""
        heaviest = self.vocabulary.mass_tensor(device=batch.mz.device).max()
        neutral = (batch.precursor_mz.double() - PROTON) * batch.charge
        return neutral <= self.max_length * heaviest + REACH_SLACK_DA

    def stop_check_interval(self, batch: SpectrumBatch) -> int | None:
        """:attr:`stop_check_every` for this batch's device."""
        if self.stop_check_every != "auto":
            return self.stop_check_every
        return None if batch.mz.is_cuda else 1

    def is_peptide(self, tokens: torch.Tensor) -> torch.Tensor:
        """Bool (...): the token row holds a residue (not only padding, a stop or an N-terminal modification)."""
        residue = (self.vocabulary.mass_tensor(device=tokens.device) != 0) & \
            ~self.vocabulary.start_only_mask(device=tokens.device)
        return residue[tokens].any(-1)

    def features(self, batch: SpectrumBatch, beam: Beam, intensity: str | None = "judge") -> torch.Tensor:
        """(B, K, F) :func:`~peptide_losses.features.candidate_features` of the beam's candidates, and
        the intensity feature of ``intensity`` last (:func:`~peptide_losses.predicted_intensity.source_correlations`:
        ``"ms2pip"`` or ``"model"``; ``"judge"``: as the judge reads; None: none)."""
        features = candidate_features(beam, self.vocabulary.mass_tensor(device=batch.mz.device),
                                      self.vocabulary.start_only_mask(device=batch.mz.device), batch.mz,
                                      batch.intensity, batch.peak_mask, self.config.decoding.precursor_tolerance_ppm,
                                      backend=self.backend)
        if intensity == "judge":
            intensity = None if self.judge is None else self.judge.intensity_source
        if intensity is None:
            return features
        correlation = source_correlations(intensity, beam.tokens, beam.finished, self.vocabulary, batch.mz,
                                          batch.intensity, batch.peak_mask, batch.charge)
        return torch.cat([features, correlation[..., None]], -1)

    @torch.no_grad()
    def candidates(self, batch: SpectrumBatch, decoding: str, beam_size: int | None) -> tuple[Beam, Scores]:
        """The decoding's beam (B, K, L) and its candidates' :class:`Scores` (B, K)."""
        if decoding == "judge" and self.judge is None:
            raise ValueError("decoding 'judge' needs the checkpoint's judge file (<checkpoint>.judge.json); "
                             "fit one with peptide-losses fit-judge, or use --decoding default")
        settings = self.config.decoding
        beam = self.beam(batch, 1 if decoding == "greedy" else beam_size, guided=decoding in ("judge", "default"))
        log_prob = beam.mean_log_prob()
        combined = log_prob
        if decoding == "judge":
            combined = self.judge.probability(self.features(batch, beam), beam.finished)
        elif decoding != "greedy":
            combined = rerank(beam.tokens, log_prob, precursor_ppm=beam.ppm,
                              tolerance_ppm=settings.precursor_tolerance_ppm,
                              **({"spectrum_scores": beam.spectrum, "weight": settings.spectrum_weight}
                                 if decoding == "default" else {})).combined
        # An unfinished candidate is a truncated peptide, and one without a residue none at all.
        return beam, Scores(torch.where(beam.finished, combined, -torch.inf), log_prob, beam.ppm, beam.spectrum)

    def sequence(self, spectra: Sequence[Spectrum], decoding: str | None = None, beam_size: int | None = None,
                 top_k: int = 1) -> list[list[Candidate]]:
        """Up to ``top_k`` candidates per spectrum, best first (an empty list: none finished);
        ``decoding`` None: :attr:`default_decoding`."""
        decoding = decoding or self.default_decoding
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        if top_k < 1 or (beam_size is not None and beam_size < 1):
            raise ValueError(f"top_k and beam_size must be >= 1, got {top_k} and {beam_size}")
        found, values = self.candidates(self.batch(spectra), decoding, beam_size)
        combined, log_prob, ppm, scores = (v.float().cpu() for v in values)
        tokens = found.tokens.cpu()
        out = []
        for b in range(len(spectra)):
            order = [k for k in torch.argsort(combined[b], descending=True, stable=True).tolist()
                     if torch.isfinite(combined[b, k])]
            out.append([Candidate([t for t in tokens[b, k].tolist() if t], float(combined[b, k]),
                                  float(log_prob[b, k]), float(ppm[b, k]), float(scores[b, k]))
                        for k in _distinct(tokens[b], order)[:top_k]])
        return out


def _distinct(rows: torch.Tensor, order: Iterable[int]) -> list[int]:
    """``order`` without a row equal to an earlier one (a beam can hold one peptide twice only as
    padding variants, but a user asking for the top 5 wants 5 peptides)."""
    seen, kept = set(), []
    for k in order:
        key = tuple(t for t in rows[k].tolist() if t)
        if key not in seen:
            seen.add(key)
            kept.append(k)
    return kept


def load_sequencer(path: str | Path | None = None, device: str | torch.device = "cpu") -> Sequencer:
    """The model of a trainer checkpoint (default :data:`DEFAULT_CHECKPOINT`) in eval mode on ``device``
    (float32 weights; a bf16 ``compact.pt`` is widened). CheckpointError naming the file if it is not one
    the trainer wrote or its weights do not fit its model and vocabulary."""
    from .train.checkpoint import load_checkpoint, vocabulary_from_record
    from .train.config import config_from_dict, with_defaults
    from .train.trainer import build

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    device = torch.device(device)
    try:
        state = load_checkpoint(path, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as err:  # torch.load raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a checkpoint torch can load: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not {"model", "config", "vocabulary"} <= state.keys():
        raise CheckpointError(f"{path}: not a peptide_losses checkpoint (it needs model, config and vocabulary)")
    try:
        vocabulary = vocabulary_from_record(state["vocabulary"])
        config = config_from_dict(with_defaults(state["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {err}") from None
    # CPU bf16 autocast only slows decoding; the weights are widened to float32 below either way.
    config = dataclasses.replace(config, precision="fp32")
    model, _ = build(config, vocabulary, device)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()})
    except RuntimeError as err:
        raise CheckpointError(f"{path}: its weights do not fit its model and vocabulary "
                              f"({len(vocabulary)} tokens, fingerprint {vocabulary.fingerprint}): "
                              f"{str(err).splitlines()[0]}") from None
    model.eval()
    judge = Judge.load(judge_path(path), "beam") if judge_path(path).is_file() else None
    return Sequencer(model, config, vocabulary, device, judge=judge)
