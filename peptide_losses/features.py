"""What a judge reads about each candidate peptide of a beam: the model's, the precursor's and the
fragment ions' evidence, (B, K, F) float32 in the order of :data:`FEATURES`.

Fragment evidence counts the singly and doubly charged b and y ions of each candidate matched
to an observed peak within ``tolerance`` (m/z). Cleavage site i (1..n-1, between residue i and
i+1) is *covered* when its b_i or its complementary y_{n-i} is matched; site 1 pins which residue
comes first, site n-1 which comes last, the swaps a spectrum-distance score cannot see
(45 % of the real spectra whose truth was in the beam but not chosen differed from it only in
the order of the first two residues).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .constants import H2O, PROTON
from .checks import resolve_backend
from .decoding import mean_log_prob

#: Feature names, in the order of the last axis of :func:`candidate_features`.
FEATURES = (
    "mean_log_prob", "log_prob", "residues", "model_rank", "model_margin",
    "log_ppm", "precursor_fits", "spectrum_score", "spectrum_rank", "spectrum_margin",
    "intensity_explained", "peaks_explained", "b_matched", "y_matched", "longest_ladder", "complementary",
    "first_site", "second_site", "last_site", "second_last_site",
)
#: What every candidate has whatever proposed it: the precursor's, spectrum score's and fragments' evidence.
EVIDENCE = FEATURES[FEATURES.index("log_ppm"):]
#: What a judge of another tool's PSMs reads (``peptide-losses rescore --judge``): the tool's score,
#: its rank and its margin to the spectrum's best, then :data:`EVIDENCE`.
PSM_FEATURES = ("tool_score", "tool_rank", "tool_margin", *EVIDENCE)
#: Fragment match tolerance (m/z), as the intensity probe that motivated the judge used.
TOLERANCE = 0.02
#: A candidate's spectrum score where it is not finite: worse than any real score (Da), not inf.
WORST_SPECTRUM_SCORE = 1.0


class Beam(NamedTuple):
    """One spectrum batch's beam: ``tokens`` (B, K, L), ``log_prob`` (B, K) summed, ``finished`` (B, K),
    and the evidence :func:`peptide_losses.decoding.rerank` weighs: ``ppm`` and ``spectrum`` (B, K)."""

    tokens: torch.Tensor
    log_prob: torch.Tensor
    finished: torch.Tensor
    ppm: torch.Tensor
    spectrum: torch.Tensor

    def mean_log_prob(self) -> torch.Tensor:
        """(B, K) log-probability per token (:func:`peptide_losses.decoding.mean_log_prob`)."""
        return mean_log_prob(self.tokens, self.log_prob, self.finished)


def _rank(values: torch.Tensor, valid: torch.Tensor, descending: bool) -> torch.Tensor:
    """Rank (0 = best) of each candidate among the valid ones of its spectrum, / K."""
    fill = -torch.inf if descending else torch.inf
    order = torch.where(valid, values, fill).argsort(dim=-1, descending=descending, stable=True)
    return order.argsort(dim=-1).float() / values.shape[-1]


def _margin(values: torch.Tensor, valid: torch.Tensor, higher_is_better: bool) -> torch.Tensor:
    """How far each candidate is from the best valid one of its spectrum (>= 0)."""
    if higher_is_better:
        best = torch.where(valid, values, -torch.inf).amax(-1, keepdim=True)
        margin = best - values
    else:
        best = torch.where(valid, values, torch.inf).amin(-1, keepdim=True)
        margin = values - best
    return torch.where(valid & margin.isfinite(), margin, 0.0)


def _matched(ions: torch.Tensor, peaks: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Bool, same shape as ``ions`` (R, M): an ascending real peak (R, N; +inf padding) within ``tolerance``."""
    n = peaks.shape[-1]
    if n == 0:
        return torch.zeros_like(ions, dtype=torch.bool)
    index = torch.searchsorted(peaks, ions.contiguous())
    above = peaks.gather(-1, index.clamp_max(n - 1))
    below = peaks.gather(-1, (index - 1).clamp_min(0))
    return torch.minimum((above - ions).abs(), (below - ions).abs()) <= tolerance


def _longest_run(covered: torch.Tensor) -> torch.Tensor:
    """Length of the longest run of True along the last axis (R, S) -> (R,)."""
    run = torch.zeros(covered.shape[:-1], device=covered.device)
    best = torch.zeros_like(run)
    for s in range(covered.shape[-1]):
        run = torch.where(covered[..., s], run + 1, 0.0)
        best = torch.maximum(best, run)
    return best


def residue_rows(rows: torch.Tensor, masses: torch.Tensor, start_only: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token rows (R, L) as residues, an N-terminal modification being no cleavage site: the rows with
    its column dropped (padding 0 appended), their float64 masses (``masses`` (V,) Da, padding 0) with
    the modification's mass carried by the first residue, and (R,) bool where a row opened with one
    (``start_only`` (V,) bool)."""
    opening = start_only[rows[:, 0]]
    shifted = torch.where(opening[:, None], torch.nn.functional.pad(rows[:, 1:], (0, 1)), rows)
    masses = masses.to(torch.float64)
    residue = masses[shifted]
    residue[:, 0] += torch.where(opening, masses[rows[:, 0]], 0.0)
    return shifted, residue, opening


def fragment_evidence(tokens: torch.Tensor, masses: torch.Tensor, start_only: torch.Tensor, mz: torch.Tensor,
                      intensity: torch.Tensor, peak_mask: torch.Tensor, tolerance: float = TOLERANCE,
                      backend: str = "auto") -> torch.Tensor:
    """(B, K, 10) float32, the ten fragment features of :data:`FEATURES` (from ``intensity_explained``),
    each a fraction in [0, 1]. Token rows (B, K, L) N->C with padding 0, indices into ``masses`` (V,)
    Da; start_only (V,) bool, the N-terminal modifications, whose mass belongs to the first residue's
    ions; peaks (B, N): ``mz`` (m/z), ``intensity`` and ``peak_mask`` (bool, True at real peaks);
    ``tolerance`` in m/z. ``backend``: ``"triton"`` runs the one-launch kernel
    (:mod:`peptide_losses.kernels.features`), ``"reference"`` this plain PyTorch, ``"auto"`` as
    :func:`~peptide_losses.checks.resolve_backend` decides. No host sync either way."""
    if resolve_backend(backend, tokens.device) == "triton":
        from .kernels.features import fragment_evidence_forward

        return fragment_evidence_forward(tokens, masses, start_only, mz, intensity, peak_mask, tolerance)
    batch, k, length = tokens.shape
    rows = tokens.reshape(batch * k, length)
    _, residue, opening = residue_rows(rows, masses, start_only)
    prefix = residue.cumsum(-1)
    n = (rows != 0).sum(-1) - opening.long()
    total = prefix[:, -1:]
    sites = torch.arange(1, length, device=tokens.device)
    real_site = sites[None, :] < n[:, None]  # site i exists for i < n
    b1 = prefix[:, :-1] + PROTON  # b_i, i = 1..L-1
    y1 = total - prefix[:, :-1] + H2O + PROTON  # y_{n-i}, the complement of b_i
    peaks = torch.where(peak_mask, mz.to(torch.float64), torch.inf).sort(-1).values.repeat_interleave(k, 0)
    b = _matched(b1, peaks, tolerance) | _matched((b1 + PROTON) / 2, peaks, tolerance)
    y = _matched(y1, peaks, tolerance) | _matched((y1 + PROTON) / 2, peaks, tolerance)
    b, y = b & real_site, y & real_site
    covered = b | y
    cuts = (n - 1).clamp_min(1).double()

    # Peak side: is each peak within tolerance of any ion of the candidate?
    ions = torch.cat([b1, y1, (b1 + PROTON) / 2, (y1 + PROTON) / 2], -1)
    ions = torch.where(real_site.repeat(1, 4), ions, torch.inf).sort(-1).values
    real = peak_mask.repeat_interleave(k, 0)
    explained = _matched(torch.where(real, mz.to(torch.float64).repeat_interleave(k, 0), torch.inf), ions,
                         tolerance) & real
    weights = intensity.to(torch.float64).repeat_interleave(k, 0) * real
    # Site i is a column for 1 <= i <= L - 1 (covered only if i < n); the padding column keeps L = 1 gatherable.
    padded = torch.nn.functional.pad(covered, (0, 1))
    site = lambda i: (padded.gather(-1, (i - 1).clamp(0, length - 1)[:, None])[:, 0]  # noqa: E731
                      & (i >= 1) & (i <= length - 1))

    features = [
        (weights * explained).sum(-1) / weights.sum(-1).clamp_min(1e-12),
        explained.sum(-1) / real.sum(-1).clamp_min(1),
        b.sum(-1) / cuts, y.sum(-1) / cuts,
        _longest_run(covered).double() / cuts, (b & y).sum(-1) / cuts,
        site(torch.ones_like(n)), site(torch.full_like(n, 2)), site(n - 1), site(n - 2),
    ]
    out = torch.stack([f.double() for f in features], -1).float()
    return out.view(batch, k, -1)


def evidence_features(tokens: torch.Tensor, ppm: torch.Tensor, spectrum: torch.Tensor, valid: torch.Tensor,
                      masses: torch.Tensor, start_only: torch.Tensor, mz: torch.Tensor, intensity: torch.Tensor,
                      peak_mask: torch.Tensor, tolerance_ppm: float = 20.0, backend: str = "auto") -> torch.Tensor:
    """(B, K, 15) :data:`EVIDENCE` of candidates (B, K, L) whatever proposed them: the precursor's
    (``ppm`` (B, K), the smallest over isotope errors; ``tolerance_ppm`` defines ``precursor_fits``),
    the spectrum score's (``spectrum`` (B, K) Da, ranked among the ``valid`` candidates) and the
    fragment ions' (:func:`fragment_evidence` by ``backend``). Non-finite inputs become finite stand-ins."""
    spectrum = torch.where(spectrum.isfinite(), spectrum, WORST_SPECTRUM_SCORE).clamp_max(WORST_SPECTRUM_SCORE)
    ppm = ppm.abs().nan_to_num(nan=1e6, posinf=1e6)
    precursor = [torch.log1p(ppm), (ppm <= tolerance_ppm).float(), spectrum, _rank(spectrum, valid, False),
                 _margin(spectrum, valid, False)]
    fragments = fragment_evidence(tokens, masses, start_only, mz, intensity, peak_mask, backend=backend)
    return torch.cat([torch.stack([f.float() for f in precursor], -1), fragments], -1)


def candidate_features(beam: Beam, masses: torch.Tensor, start_only: torch.Tensor, mz: torch.Tensor,
                       intensity: torch.Tensor, peak_mask: torch.Tensor, tolerance_ppm: float = 20.0,
                       backend: str = "auto") -> torch.Tensor:
    """(B, K, F) :data:`FEATURES` of each candidate of ``beam``: the model's five, then
    :func:`evidence_features`. Non-finite inputs (an empty slot's -inf log-probability, an unscorable
    candidate's +inf spectrum score) become finite stand-ins: the judge sees every row, and
    :class:`~peptide_losses.judge.Judge` never chooses an invalid one."""
    residues = (beam.tokens != 0).sum(-1)
    mean = beam.mean_log_prob()
    valid = beam.finished & mean.isfinite()
    model = [
        torch.where(valid, mean, -20.0).clamp_min(-20.0), torch.where(valid, beam.log_prob, -200.0).clamp_min(-200.0),
        residues.float(), _rank(mean, valid, True), _margin(mean, valid, True).clamp_max(20.0),
    ]
    evidence = evidence_features(beam.tokens, beam.ppm, beam.spectrum, valid, masses, start_only, mz, intensity,
                                 peak_mask, tolerance_ppm, backend)
    return torch.cat([torch.stack([f.float() for f in model], -1), evidence], -1)


def psm_features(tool_score: torch.Tensor, valid: torch.Tensor, tokens: torch.Tensor, ppm: torch.Tensor,
                 spectrum: torch.Tensor, masses: torch.Tensor, start_only: torch.Tensor, mz: torch.Tensor,
                 intensity: torch.Tensor, peak_mask: torch.Tensor, tolerance_ppm: float = 20.0,
                 backend: str = "auto") -> torch.Tensor:
    """(B, K, F) :data:`PSM_FEATURES` of another tool's K PSMs per spectrum: its score (``tool_score``
    (B, K), higher = better, on the tool's own scale), the score's rank and margin among the spectrum's
    ``valid`` PSMs, then :func:`evidence_features`. A judge of these is fitted per tool
    (``peptide-losses fit-judge --psms``): the scale of one tool's score says nothing of another's."""
    score = torch.where(valid, tool_score, 0.0)
    tool = [score, _rank(score, valid, True), _margin(score, valid, True)]
    evidence = evidence_features(tokens, ppm, spectrum, valid, masses, start_only, mz, intensity, peak_mask,
                                 tolerance_ppm, backend)
    return torch.cat([torch.stack([f.float() for f in tool], -1), evidence], -1)
