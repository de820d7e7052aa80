"""Labelled beams for fitting and measuring a :class:`~peptide_losses.judge.Judge`: each annotated
spectrum decoded by the model's default (spectrum-guided) beam, every candidate's features and
whether it matches the annotation (Casanovo's mass-based match, I = L)."""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from .checks import choose
from .predicted_intensity import source_correlations
from .sequencing import Sequencer
from .spectra import Spectrum
from .train.metrics import peptide_matches


class LabelledBeams(NamedTuple):
    """(S, K, ...) over S spectra: ``features`` (S, K, F), ``valid`` (S, K) candidates that are
    peptides, ``correct`` (S, K) matches, and the default decoding's ``default`` choice (S,) index
    (-1: none)."""

    features: torch.Tensor
    valid: torch.Tensor
    correct: torch.Tensor
    default: torch.Tensor


def matches_annotation(tokens: torch.Tensor, annotations: Sequence[Sequence[int]], masses: torch.Tensor) -> torch.Tensor:
    """(S, K) bool: candidate token rows (S, K, L) that match their spectrum's annotation (token
    indices, one list per spectrum), by Casanovo's mass-based peptide match (I = L)."""
    s, k, length = tokens.shape
    width = max(length, max(map(len, annotations)))
    truth = torch.zeros(s, width, dtype=torch.long)
    for b, annotation in enumerate(annotations):
        truth[b, :len(annotation)] = torch.tensor(list(annotation), dtype=torch.long)
    rows = torch.nn.functional.pad(tokens.reshape(s * k, length), (0, width - length))
    return peptide_matches(rows, truth.repeat_interleave(k, 0), masses).view(s, k)


@torch.no_grad()
def labelled_beams(sequencer: Sequencer, spectra: Sequence[Spectrum], beam_size: int | None = None,
                   batch_size: int = 64, progress=None, intensities: Sequence[str] = ()) -> LabelledBeams:
    """The labelled beams of annotated ``spectra`` (each with ``tokens``), the features of
    :data:`~peptide_losses.features.FEATURES` and then the intensity feature of each of ``intensities``
    (``"ms2pip"``, ``"model"``: :func:`~peptide_losses.predicted_intensity.source_correlations`);
    ``progress(n)`` after each batch."""
    parts = []
    masses = sequencer.vocabulary.mass_tensor()
    for start in range(0, len(spectra), batch_size):
        chunk = list(spectra[start:start + batch_size])
        if any(s.tokens is None for s in chunk):
            raise ValueError("every spectrum needs an annotation to label its beam")
        batch = sequencer.batch(chunk)
        beam, scores = sequencer.candidates(batch, "default", beam_size)
        correct = matches_annotation(beam.tokens.cpu(), [x.tokens for x in chunk], masses)
        default = choose(scores.combined)
        features = [sequencer.features(batch, beam, None)]
        features += [source_correlations(source, beam.tokens, beam.finished, sequencer.vocabulary, batch.mz,
                                         batch.intensity, batch.peak_mask, batch.charge)[..., None]
                     for source in intensities]
        parts.append((torch.cat(features, -1).cpu(), beam.finished.cpu(),
                      correct & beam.finished.cpu(), default.cpu()))
        if progress is not None:
            progress(len(chunk))
    return LabelledBeams(*(torch.cat(p) for p in zip(*parts)))
