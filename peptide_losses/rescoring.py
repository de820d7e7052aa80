"""Another tool's PSMs (an mzTab with several per spectrum) beside their spectra, and the evidence the
package weighs for each: the spectrum score, the precursor error and, for a judge, every feature of
:func:`~peptide_losses.features.psm_features`. ``peptide-losses rescore`` reranks by it and
``peptide-losses fit-judge --psms`` fits a judge of the tool's PSMs on annotated spectra.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch

from .decoding import candidate_ppm
from .features import psm_features
from .integrations.candidates import candidate_tokens
from .mztab import MzTabError, PSMFile, PSMRow, read_psm_file
from .predicted_intensity import source_correlations
from .scoring import spectrum_scores
from .spectra import Spectrum, SpectrumBatch, collate
from .vocabulary import Vocabulary

#: Spectrum-score Da that an off-mass candidate pays in the plain rescore's cost (1 at its default weight 100).
PRECURSOR_PENALTY = 1 / 100.0
#: Spectra scored at once: the reference scorer holds (spectra x K, peaks, ions) distances.
CHUNK = 256


class ToolPSMs(NamedTuple):
    """An mzTab read for rescoring: the ``file`` (lines, header, rows), its PSMs grouped by spectrum
    in file order (``groups``: spectra_ref -> rows) and each referenced spectrum (``spectra``)."""

    file: PSMFile
    groups: dict[str, list[PSMRow]]
    spectra: dict[str, Spectrum]


def read_tool_psms(psms: str, spectra: dict[str, Spectrum], spectra_name: str, vocabulary: Vocabulary) -> ToolPSMs:
    """The PSMs of mzTab ``psms`` grouped by spectrum, each referencing one of ``spectra`` (by ref, read
    from the file or set named ``spectra_name``); MzTabError naming the file and line of a PSM whose
    spectrum is missing or whose peptide has a token the vocabulary lacks."""
    file = read_psm_file(psms)
    if not file.psms:
        raise MzTabError(f"{psms}: no PSM rows to rescore")
    groups: dict[str, list[PSMRow]] = {}
    for psm in file.psms:
        if psm.ref not in spectra:
            raise MzTabError(f"{psms}, line {psm.line}: spectra_ref ms_run[1]:{psm.ref} is not a spectrum of "
                             f"{spectra_name} ({len(spectra)} spectra)")
        try:
            vocabulary.encode(psm.sequence)
        except ValueError as err:
            raise MzTabError(f"{psms}, line {psm.line}: sequence {psm.sequence!r}: {err}") from None
        groups.setdefault(psm.ref, []).append(psm)
    return ToolPSMs(file, groups, {ref: spectra[ref] for ref in groups})


class Evidence(NamedTuple):
    """A chunk of B spectra with up to K PSMs each (K = the most of any of them; a spectrum with fewer
    has empty slots past its own): ``tokens`` (B, K, L), ``present`` (B, K), the tool's ``score``
    (B, K) float64 (-inf at empty slots), the ``spectrum`` scores (B, K) Da, the precursor ``ppm``
    (B, K, smallest over the isotope errors), the plain rescore's ``cost`` (B, K)
    ``spectrum + PRECURSOR_PENALTY * 1[ppm > tolerance]`` and the collated ``batch``."""

    tokens: torch.Tensor
    present: torch.Tensor
    score: torch.Tensor
    spectrum: torch.Tensor
    ppm: torch.Tensor
    cost: torch.Tensor
    batch: SpectrumBatch


def evidence(groups: Sequence[Sequence[PSMRow]], spectra: Sequence[Spectrum], vocabulary: Vocabulary,
             tolerance: float, isotope_errors: Sequence[int], backend: str = "auto") -> Evidence:
    """The :class:`Evidence` of each spectrum's PSMs (``groups[b]`` of ``spectra[b]``)."""
    k = max(map(len, groups))
    rows = candidate_tokens([[p.sequence for p in group] for group in groups], vocabulary, beam_size=k)
    batch = collate(list(spectra), vocabulary)
    masses = vocabulary.mass_tensor()
    scores = spectrum_scores(rows.tokens, batch.mz, batch.intensity, masses=masses, peak_mask=batch.peak_mask,
                             backend=backend)
    ppm = candidate_ppm(rows.tokens, masses, batch.precursor_mz, batch.charge, tuple(isotope_errors))
    # A NaN ppm (a bad precursor) cannot show that the candidate fits: it pays the penalty.
    cost = scores + PRECURSOR_PENALTY * ~(ppm <= tolerance)
    # float64: at weight 0 the tool's scores are written back to the last digit.
    tool = torch.full(cost.shape, -torch.inf, dtype=torch.float64)
    for b, group in enumerate(groups):
        tool[b, :len(group)] = torch.tensor([p.score for p in group], dtype=torch.float64)
    return Evidence(rows.tokens, rows.present, tool, scores, ppm, cost, batch)


def judge_features(found: Evidence, vocabulary: Vocabulary, tolerance: float, backend: str = "auto",
                   intensity: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, F) :func:`~peptide_losses.features.psm_features` of the chunk's PSMs (with the intensity
    feature of ``intensity``, ``"ms2pip"`` or ``"model"``, last) and (B, K) ``valid``: present with a finite tool score (a
    null score gets no P(correct) and ranks last)."""
    valid = found.present & found.score.isfinite()
    batch = found.batch
    features = psm_features(found.score, valid, found.tokens, found.ppm, found.spectrum, vocabulary.mass_tensor(),
                            vocabulary.start_only_mask(), batch.mz, batch.intensity, batch.peak_mask, tolerance,
                            backend)
    if intensity is not None:
        correlation = source_correlations(intensity, found.tokens, valid, vocabulary, batch.mz, batch.intensity,
                                          batch.peak_mask, batch.charge)
        features = torch.cat([features, correlation[..., None]], -1)
    return features, valid
