"""The exact mathematics of both losses, in plain differentiable PyTorch.

This module is the definition; the Triton kernels in ``peptide_losses.kernels``
mirror it and are tested against it. Everything is computed in float32, or in
float64 when the logits / residue masses are float64. Gradients flow to the
logits (or residue masses) only: observed m/z, intensities, charges and
precursor m/z are data.

Shapes: B spectra, L positions, V vocabulary tokens, N observed peaks,
M = len(ion_types) * len(charges) * L theoretical ions.

Positions are tokens: every unmasked position adds its expected mass, in order,
so an N-terminal modification token predicted at position 0 is one more
position (its mass is a prefix like any residue's). Masses built from a known
sequence with :meth:`Vocabulary.residue_masses` fold the N-terminal delta into
the first residue instead, so that their fragments equal pyteomics' ions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from . import checks
# The options' values (DIRECTIONS, ...; ION_TYPES) stay readable here, beside the maths that takes them.
from .checks import DIRECTIONS, DISTANCES, REDUCTIONS  # noqa: F401
from .constants import C13_C12, H2O, ION_OFFSETS, ION_TYPES, PREFIX_IONS, PROTON  # noqa: F401

#: ppm distances are relative to max(theoretical m/z, MIN_PPM_REFERENCE_MZ) so
#: that a degenerate predicted ion (m/z <= 0 from a negative N-terminal mod)
#: cannot divide by zero.
MIN_PPM_REFERENCE_MZ = 1.0

#: ``distance_scale="auto"``: tau per distance unit. On real spectra (``python -m
#: benchmarks.training.discrimination``) the true peptide beats its decoys most often for tau
#: of 0.001-0.005 Da (1-5 ppm), all alike; the largest keeps float32 rounding of
#: fragment m/z (~1e-4 Da at 2000 Da) small against tau and the slope alive farthest.
AUTO_DISTANCE_SCALE = {"da": 0.005, "ppm": 5.0}


@dataclass(frozen=True)
class SpectrumDefaults:
    """Option defaults of the spectrum matching loss; the reference, the public function and the
    module all take theirs from :data:`SPECTRUM_DEFAULTS`."""

    ion_types: tuple[str, ...] = ("b", "y")
    charges: tuple[int, ...] = (1, 2)
    direction: str = "observed"
    distance: str = "da"
    distance_scale: float | str | None = "auto"
    intensity_power: float = 1.0
    reduction: str = "mean"


@dataclass(frozen=True)
class PrecursorDefaults:
    """Option defaults of the precursor mass loss (:data:`PRECURSOR_DEFAULTS`)."""

    scale: float = 100.0
    isotope_errors: tuple[int, ...] = (0,)
    reduction: str = "mean"


SPECTRUM_DEFAULTS = SpectrumDefaults()
PRECURSOR_DEFAULTS = PrecursorDefaults()


def resolve_distance_scale(distance: str, distance_scale: float | str | None) -> float | None:
    """tau in the unit of ``distance``: :data:`AUTO_DISTANCE_SCALE` for ``"auto"``, else as given (None: plain)."""
    if isinstance(distance_scale, str) and distance_scale == "auto":
        return AUTO_DISTANCE_SCALE[distance]
    return distance_scale


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 for float64 input, float32 otherwise (bf16/fp16 are upcast)."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def expected_residue_masses(
    logits: torch.Tensor, masses: torch.Tensor, *, normalized: bool = False
) -> torch.Tensor:
    """Expected residue mass per position, Da.

    ``E[b, l] = sum_v softmax(logits[b, l])_v * masses[v]``

    Args:
        logits: (B, L, V) float logits; probabilities if ``normalized=True``.
        masses: (V,) token masses in Da (``Vocabulary.mass_tensor()``).
        normalized: the input already holds probabilities (rows sum to 1).

    Returns:
        (B, L) expected masses in Da, float32 (float64 for float64 input).
    """
    dtype = compute_dtype(logits)
    # Autocast would run the matmul in bf16/fp16, rounding a 130 Da mass to 0.5 Da.
    with torch.autocast(logits.device.type, enabled=False):
        probs = logits.to(dtype) if normalized else torch.softmax(logits.to(dtype), dim=-1)
        return probs @ masses.to(dtype)


def fragment_mz(
    residue_masses: torch.Tensor,
    mask: torch.Tensor,
    ion_types: Sequence[str] = SPECTRUM_DEFAULTS.ion_types,
    charges: Sequence[int] = SPECTRUM_DEFAULTS.charges,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Theoretical fragment ion m/z from per-position residue masses.

    The peptide is the sequence of unmasked positions. Slot ``l`` of every
    series is the cleavage after position ``l``: prefix ions (a, b, c) hold
    ``P_l = sum_{l' <= l} mask * m``, suffix ions (x, y, z) hold ``S_l = total - P_l``,
    both summed and subtracted in float64 and rounded once to the compute dtype.
    A slot is valid when position ``l`` is unmasked and some unmasked position
    follows it, so an n-residue peptide has fragments k = 1..n-1 of each series.
    Neutral fragment = sum + ``ION_OFFSETS[type]``; m/z = (neutral + z * proton) / z.

    Args:
        residue_masses: (B, L) masses in Da.
        mask: (B, L) bool, True for real positions.
        ion_types: subset of a, b, c, x, y, z, in the order wanted.
        charges: fragment charges (positive ints).

    Returns:
        ``(mz, valid)``, each (B, M) with M = len(ion_types) * len(charges) * L;
        ion ``j = (type_index * len(charges) + charge_index) * L + l``.
    """
    dtype = compute_dtype(residue_masses)
    # Sums and the suffix's subtraction in float64, then rounded once: S_l = total - P_l is a
    # difference of two sums of thousands of Da, and in float32 the small suffix ions of a
    # long peptide would carry the total's rounding (~1e-4 Da, several ppm of y1).
    m = torch.where(mask, residue_masses.to(torch.float64), 0)
    exact_prefix = torch.cumsum(m, dim=-1)
    prefix = exact_prefix.to(dtype)
    suffix = (exact_prefix[:, -1:] - exact_prefix).to(dtype)
    count = mask.to(torch.int32)
    after = count.sum(-1, keepdim=True) - torch.cumsum(count, dim=-1)
    slot_valid = mask & (after > 0)
    mz, valid = [], []
    for ion in ion_types:
        neutral = (prefix if ion in PREFIX_IONS else suffix) + ION_OFFSETS[ion]
        for z in charges:
            mz.append((neutral + z * PROTON) / z)
            valid.append(slot_valid)
    return torch.cat(mz, dim=-1), torch.cat(valid, dim=-1)


def _log_scaled(d: torch.Tensor, scale: float | None) -> torch.Tensor:
    """``scale * log1p(d / scale)``: ~d for d << scale, slope scale / (scale + d) > 0."""
    return d if scale is None else scale * torch.log1p(d / scale)


def reduce_spectra(
    per_spectrum: torch.Tensor, counted: torch.Tensor, reduction: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reduced loss and, for ``"mean"``, its denominator.

    Mean over counted spectra (0 if none), sum, or the (B,) vector. d loss / d
    per_spectrum[b] is 1 / denominator for the mean, 1 otherwise (the fused
    losses' backward uses that instead of autograd nodes).
    """
    if reduction == "none":
        return per_spectrum, None
    total = per_spectrum.sum()
    if reduction == "sum":
        return total, None
    denominator = counted.sum().clamp_min(1).to(total.dtype)
    return total / denominator, denominator


def _reduce(per_spectrum: torch.Tensor, counted: torch.Tensor, reduction: str) -> torch.Tensor:
    return reduce_spectra(per_spectrum, counted, reduction)[0]


def _nan_where_bad(
    per_spectrum: torch.Tensor, counted: torch.Tensor, bad: torch.Tensor, residue_masses: torch.Tensor,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """NaN loss for spectra with a bad value (:mod:`peptide_losses.checks`), counted in the mean.

    Their gradient is NaN at every unmasked position (0 at masked ones), whatever
    the maths around the bad value would give: the second term is 0 with zero
    gradient for good spectra and NaN with NaN gradient for bad ones.
    """
    nan_at = torch.where(mask & bad[:, None], torch.nan, 0.0).to(per_spectrum.dtype)
    poison = (torch.where(mask, residue_masses.to(per_spectrum.dtype), 0) * nan_at).sum(-1)
    return torch.where(bad, torch.nan, per_spectrum) + poison, counted | bad


def spectrum_matching_loss(
    residue_masses: torch.Tensor,
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    *,
    ion_types: Sequence[str] = SPECTRUM_DEFAULTS.ion_types,
    charges: Sequence[int] = SPECTRUM_DEFAULTS.charges,
    direction: str = SPECTRUM_DEFAULTS.direction,
    distance: str = SPECTRUM_DEFAULTS.distance,
    distance_scale: float | str | None = SPECTRUM_DEFAULTS.distance_scale,
    intensity_power: float = SPECTRUM_DEFAULTS.intensity_power,
    reduction: str = SPECTRUM_DEFAULTS.reduction,
) -> torch.Tensor:
    """Nearest-theoretical-ion distance between a predicted peptide and its spectrum.

    With t_j the valid theoretical ions of :func:`fragment_mz`, o_i the valid
    observed peaks, ``w_i = intensity_i ** intensity_power`` and
    ``d_ij = |o_i - t_j|`` (Da) or ``|o_i - t_j| / max(t_j, 1) * 1e6`` (ppm),
    each nearest distance d passed through ``f(d) = tau * log1p(d / tau)`` when
    ``distance_scale=tau`` (identity for None; ``"auto"``, the default, is
    :data:`AUTO_DISTANCE_SCALE`: 0.005 Da or 5 ppm):

    - observed:    ``sum_i w_i f(min_j d_ij) / sum_i w_i``
    - theoretical: ``mean_j f(min_i d_ij)``
    - both:        the sum of the two.

    Ties go to the lowest ion (peak) index; the gradient of |x| at 0 is 0.
    A spectrum with no valid peak, zero total weight, or fewer than two
    residues contributes 0 and is left out of the mean. A spectrum with a bad
    value (:mod:`peptide_losses.checks`: non-finite mass at an unmasked
    position, m/z not finite or <= 0 or intensity not finite or < 0 at a real
    peak) has a NaN loss, counts in the mean, and a NaN gradient at its
    unmasked positions.

    Args:
        residue_masses: (B, L) Da. mask: (B, L) bool.
        mz: (B, N) observed m/z. intensity: (B, N) >= 0. peak_mask: (B, N) bool.

    Returns:
        Scalar (mean over counted spectra, or sum) or (B,) for ``"none"``, in
        Da or ppm (float32; float64 for float64 residue masses).
    """
    options = dict(ion_types=ion_types, charges=charges, direction=direction, distance=distance,
                   distance_scale=distance_scale, intensity_power=intensity_power)
    return _reduce(*spectrum_matching_rows(residue_masses, mask, mz, intensity, peak_mask, **options), reduction)


def spectrum_matching_rows(
    residue_masses: torch.Tensor,
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    *,
    ion_types: Sequence[str] = SPECTRUM_DEFAULTS.ion_types,
    charges: Sequence[int] = SPECTRUM_DEFAULTS.charges,
    direction: str = SPECTRUM_DEFAULTS.direction,
    distance: str = SPECTRUM_DEFAULTS.distance,
    distance_scale: float | str | None = SPECTRUM_DEFAULTS.distance_scale,
    intensity_power: float = SPECTRUM_DEFAULTS.intensity_power,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`spectrum_matching_loss` before its reduction: the (B,) losses and the (B,) bool
    of the spectra that count (0 loss where not; a spectrum with a bad value counts)."""
    dtype = compute_dtype(residue_masses)
    distance_scale = resolve_distance_scale(distance, distance_scale)
    theo, theo_valid = fragment_mz(residue_masses, mask, ion_types, charges)
    # Padded peaks may hold anything (NaN, inf): a 0 there keeps them out of the backward pass.
    obs = torch.where(peak_mask, mz.detach().to(dtype), 0)
    diff = (obs[:, :, None] - theo[:, None, :]).abs()
    if distance == "ppm":
        diff = diff / theo.clamp_min(MIN_PPM_REFERENCE_MZ)[:, None, :] * 1e6
    pair_valid = peak_mask[:, :, None] & theo_valid[:, None, :]
    search = torch.where(pair_valid, diff, torch.inf)

    weight = torch.where(peak_mask, intensity.detach().to(dtype) ** intensity_power, 0)
    total_weight = weight.sum(-1)
    has_ion = theo_valid.any(-1)
    counted = has_ion & peak_mask.any(-1) & (total_weight > 0)
    bad = (checks.bad_positions(residue_masses.to(dtype), mask)
           | checks.bad_peak_mz(mz.detach().to(dtype), peak_mask)
           | checks.bad_intensity(intensity.detach().to(dtype), peak_mask))

    if 0 in search.shape[1:]:
        # No peak slot or no ion slot (N = 0 or L = 0): every spectrum is empty, and argmin
        # needs a non-empty axis. Times 0 keeps the zero loss in the graph, with zero gradient.
        return _nan_where_bad(theo.sum(-1) * 0, counted, bad, residue_masses, mask)
    per_spectrum = torch.zeros(theo.shape[0], dtype=dtype, device=theo.device)
    if direction in ("observed", "both"):
        nearest = diff.gather(-1, search.argmin(-1, keepdim=True)).squeeze(-1)
        nearest = _log_scaled(torch.where(peak_mask & has_ion[:, None], nearest, 0), distance_scale)
        per_spectrum = per_spectrum + (weight * nearest).sum(-1) / torch.where(counted, total_weight, 1)
    if direction in ("theoretical", "both"):
        nearest = diff.gather(-2, search.argmin(-2, keepdim=True)).squeeze(-2)
        has_peak = peak_mask.any(-1)
        nearest = _log_scaled(torch.where(theo_valid & has_peak[:, None], nearest, 0), distance_scale)
        per_spectrum = per_spectrum + nearest.sum(-1) / theo_valid.sum(-1).clamp_min(1)
    per_spectrum = torch.where(counted, per_spectrum, 0)
    return _nan_where_bad(per_spectrum, counted, bad, residue_masses, mask)


def peptide_mass(residue_masses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Neutral peptide mass (B,) in Da: ``sum_l mask * m_l + H2O``."""
    dtype = compute_dtype(residue_masses)
    return torch.where(mask, residue_masses.to(dtype), 0).sum(-1) + H2O


def precursor_mz(mass: torch.Tensor, charge: torch.Tensor) -> torch.Tensor:
    """Precursor m/z (B,) of neutral mass (B,) Da at charge (B,): (M + z * proton) / z."""
    z = charge.to(mass.dtype)
    return (mass + z * PROTON) / z


def precursor_ppm(
    residue_masses: torch.Tensor,
    mask: torch.Tensor,
    observed_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    isotope_errors: Sequence[int] = PRECURSOR_DEFAULTS.isotope_errors,
) -> torch.Tensor:
    """Absolute precursor error (B,) in ppm, smallest over isotope errors.

    ``ppm = min_k |mz_pred - (mz_obs - k * C13_C12 / z)| / mz_obs * 1e6``, with
    ``mz_pred = (sum_l mask * m_l + H2O + z * proton) / z``; ppm is relative to
    the observed m/z as in Casanovo. Ties between k go to the first listed.
    NaN for a spectrum with a bad value (:func:`bad_precursors`).
    """
    ppm, bad = _precursor_ppm(residue_masses, mask, observed_mz, charge, isotope_errors)
    return torch.where(bad, torch.nan, ppm)


def bad_precursors(residue_masses: torch.Tensor, mask: torch.Tensor, observed_mz: torch.Tensor,
                   charge: torch.Tensor) -> torch.Tensor:
    """(B,) True where the precursor loss is NaN (:mod:`peptide_losses.checks`): a non-finite
    mass at an unmasked position, precursor m/z not finite or <= 0, or charge < 1."""
    dtype = compute_dtype(residue_masses)
    return (checks.bad_positions(residue_masses.to(dtype), mask)
            | checks.bad_precursor_mz(observed_mz.detach().to(dtype)) | checks.bad_charge(charge))


def _precursor_ppm(residue_masses, mask, observed_mz, charge, isotope_errors) -> tuple[torch.Tensor, torch.Tensor]:
    """ppm (B,) as the maths gives it for any input, and the bad flags (B,)."""
    pred = precursor_mz(peptide_mass(residue_masses, mask), charge)
    dtype = pred.dtype
    obs = observed_mz.detach().to(dtype)
    z = charge.to(dtype)
    # One column per k, from Python numbers: a tensor of the ks would be a host-to-device
    # copy, which a CUDA-graph capture does not allow.
    shifted = torch.stack([obs - torch.full_like(obs, k) * C13_C12 / z for k in isotope_errors], dim=-1)
    ppm = (pred[:, None] - shifted).abs() / obs[:, None] * 1e6
    return ppm.min(-1).values, bad_precursors(residue_masses, mask, observed_mz, charge)


def precursor_mass_loss(
    residue_masses: torch.Tensor,
    mask: torch.Tensor,
    observed_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    scale: float = PRECURSOR_DEFAULTS.scale,
    isotope_errors: Sequence[int] = PRECURSOR_DEFAULTS.isotope_errors,
    reduction: str = PRECURSOR_DEFAULTS.reduction,
) -> torch.Tensor:
    """Log-scaled precursor error: ``scale * log1p(ppm / scale)`` per spectrum.

    Behaves like ppm for small errors and keeps a gradient
    ``scale / (scale + ppm)`` at any error (a clamp would have 0). A spectrum
    with no unmasked position contributes 0 and is left out of the mean. A
    spectrum with a bad value (:func:`bad_precursors`) has a NaN loss, counts
    in the mean, and a NaN gradient at its unmasked positions.

    Returns:
        Scalar (``"mean"``/``"sum"``) or (B,) (``"none"``), in log-scaled ppm.
    """
    ppm, bad = _precursor_ppm(residue_masses, mask, observed_mz, charge, isotope_errors)
    counted = mask.any(-1)
    per_spectrum = torch.where(counted, _log_scaled(ppm, scale), 0)
    return _reduce(*_nan_where_bad(per_spectrum, counted, bad, residue_masses, mask), reduction)
