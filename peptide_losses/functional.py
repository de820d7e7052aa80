"""Public functional entry points of both losses.

Each function checks its arguments (naming the offending one), then runs the
fused Triton kernel or the reference maths of :mod:`peptide_losses.reference`
(``backend="auto"`` picks the kernel for CUDA tensors). Both give the same
numbers; the kernel keeps no (B, L, V) or (B, N, M) tensor.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import reference
from .backend import resolve_backend
from .reference import PRECURSOR_DEFAULTS, SPECTRUM_DEFAULTS, resolve_distance_scale
from .validation import (
    as_bool_mask,
    check_float,
    check_same_device,
    check_shape,
    raise_on_bad_values,
    not_finite,
    value_checks_enabled,
)
from .validation import check_options
from .vocabulary import Vocabulary


def _prediction(logits, masses, residue_masses, mask, checks):
    """Validate the predicted side; return (B, L, bool mask, device).

    Exactly one of ``logits`` (with ``masses``) and ``residue_masses`` is given.
    """
    if (logits is None) == (residue_masses is None):
        raise ValueError("pass exactly one of logits (B, L, V) and residue_masses (B, L)")
    if logits is not None:
        check_float("logits", logits, 3)
        if masses is None:
            raise ValueError("masses (V,) is required with logits: pass Vocabulary.mass_tensor() or the Vocabulary")
        if isinstance(masses, Vocabulary):
            masses = masses.mass_tensor(device=logits.device)
        check_float("masses", masses, 1)
        if masses.shape[0] != logits.shape[-1]:
            raise ValueError(
                f"logits' last dimension ({logits.shape[-1]}) must equal the vocabulary size "
                f"len(masses) = {masses.shape[0]}: logits and vocabulary disagree"
            )
        check_same_device(logits=logits, masses=masses)
        checks += [("logits contain NaN or inf", lambda: not_finite(logits)),
                   ("masses contain NaN or inf", lambda: not_finite(masses))]
        batch, length = logits.shape[:2]
        device = logits.device
    else:
        if masses is not None:
            raise ValueError("masses is only used with logits; residue_masses are already in Da")
        check_float("residue_masses", residue_masses, 2)
        checks.append(("residue_masses contain NaN or inf", lambda: not_finite(residue_masses)))
        batch, length = residue_masses.shape
        device = residue_masses.device
    mask = as_bool_mask("mask", mask, (batch, length), device, checks)
    check_same_device(prediction=torch.empty(0, device=device), mask=mask)
    return batch, length, mask, masses


def _float_or_none(value):
    return None if value is None else float(value)


def _residue_masses(logits, masses, residue_masses):
    return residue_masses if logits is None else reference.expected_residue_masses(logits, masses)


def spectrum_matching_loss(
    logits: torch.Tensor | None,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    *,
    masses: torch.Tensor | Vocabulary | None = None,
    mask: torch.Tensor | None = None,
    peak_mask: torch.Tensor | None = None,
    residue_masses: torch.Tensor | None = None,
    ion_types: Sequence[str] = SPECTRUM_DEFAULTS.ion_types,
    charges: Sequence[int] = SPECTRUM_DEFAULTS.charges,
    direction: str = SPECTRUM_DEFAULTS.direction,
    distance: str = SPECTRUM_DEFAULTS.distance,
    distance_scale: float | str | None = SPECTRUM_DEFAULTS.distance_scale,
    intensity_power: float = SPECTRUM_DEFAULTS.intensity_power,
    reduction: str = SPECTRUM_DEFAULTS.reduction,
    backend: str = "auto",
    check_values: bool = True,
) -> torch.Tensor:
    """Intensity-weighted distance from observed peaks to the nearest predicted fragment.

    The maths (formula, ties, empty spectra) is
    :func:`peptide_losses.reference.spectrum_matching_loss`.

    Args:
        logits: (B, L, V) float (fp32/bf16/fp16/fp64) over the vocabulary, or
            None with ``residue_masses``.
        mz: (B, N) observed peak m/z. intensity: (B, N) peak intensities >= 0.
        masses: (V,) token masses in Da (``Vocabulary.mass_tensor()``) or the
            :class:`Vocabulary`; required with logits.
        mask: (B, L) bool, True at real positions (default all).
        peak_mask: (B, N) bool, True at real peaks (default all).
        residue_masses: (B, L) per-position masses in Da, instead of logits.
        ion_types: fragment series among a, b, c, x, y, z.
        charges: fragment charges, e.g. (1, 2).
        direction: ``"observed"`` (each peak to its nearest ion),
            ``"theoretical"`` (each ion to its nearest peak) or ``"both"``.
        distance: ``"da"`` (Da) or ``"ppm"`` (relative to the ion's m/z).
        distance_scale: tau (same unit as ``distance``): each nearest distance
            d becomes ``tau * log1p(d / tau)``; ``"auto"`` (default) is 0.005 Da
            or 5 ppm (``reference.AUTO_DISTANCE_SCALE``, the best separation of
            true peptides from decoys on real spectra); None keeps plain distances.
        intensity_power: peak weight = intensity ** intensity_power.
        reduction: ``"mean"`` over spectra that count, ``"sum"`` or ``"none"`` (B,).
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
        check_values: check for NaN/inf and out-of-range values (one host sync).

    Returns:
        float32 loss (float64 for float64 input), in Da or ppm; scalar or (B,).
    """
    checks: list = []
    batch, _, mask, masses = _prediction(logits, masses, residue_masses, mask, checks)
    check_float("mz", mz, 2, mz=True)
    n_peaks = mz.shape[1]
    check_shape("mz", mz, (batch, n_peaks), "(B, N)")
    check_float("intensity", intensity, 2)
    check_shape("intensity", intensity, (batch, n_peaks), "(B, N)")
    peak_mask = as_bool_mask("peak_mask", peak_mask, (batch, n_peaks), mz.device, checks)
    check_same_device(prediction=mask, mz=mz, intensity=intensity, peak_mask=peak_mask)
    check_options(
        ion_types=ion_types, charges=charges, direction=direction, distance=distance,
        distance_scale=distance_scale, intensity_power=intensity_power, reduction=reduction,
    )
    if value_checks_enabled(check_values):
        value_checks = checks + [
            ("mz contains NaN or inf at a peak_mask position", lambda: not_finite(mz) & peak_mask),
            ("intensity contains NaN or inf at a peak_mask position", lambda: not_finite(intensity) & peak_mask),
            ("intensity must be >= 0 at peak_mask positions", lambda: (intensity < 0) & peak_mask),
        ]
        raise_on_bad_values(value_checks)
    options = dict(
        ion_types=tuple(ion_types), charges=tuple(int(z) for z in charges), direction=direction,
        distance=distance, distance_scale=_float_or_none(resolve_distance_scale(distance, distance_scale)),
        intensity_power=float(intensity_power), reduction=reduction,
    )
    if resolve_backend(backend, mask.device) == "triton":
        from .spectrum_op import spectrum_matching_loss_fused

        return spectrum_matching_loss_fused(logits, masses, residue_masses, mask, mz, intensity, peak_mask, **options)
    return reference.spectrum_matching_loss(
        _residue_masses(logits, masses, residue_masses), mask, mz, intensity, peak_mask, **options
    )


def _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check):
    """Shared validation of the precursor entry points; returns (mask, masses)."""
    checks: list = []
    batch, _, mask, masses = _prediction(logits, masses, residue_masses, mask, checks)
    check_float("precursor_mz", precursor_mz, 1, mz=True)
    check_shape("precursor_mz", precursor_mz, (batch,), "(B,)")
    if not isinstance(charge, torch.Tensor) or charge.dtype.is_floating_point or charge.dtype == torch.bool:
        raise TypeError(f"charge must be an integer torch.Tensor (B,), got {getattr(charge, 'dtype', type(charge))}")
    check_shape("charge", charge, (batch,), "(B,)")
    check_same_device(prediction=mask, precursor_mz=precursor_mz, charge=charge)
    if value_checks_enabled(check):
        raise_on_bad_values(checks + [
            ("precursor_mz must be finite and > 0", lambda: not_finite(precursor_mz) | (precursor_mz <= 0)),
            ("charge must be >= 1", lambda: charge < 1),
        ])
    return mask, masses


def precursor_mass_loss(
    logits: torch.Tensor | None,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    masses: torch.Tensor | Vocabulary | None = None,
    mask: torch.Tensor | None = None,
    residue_masses: torch.Tensor | None = None,
    scale: float = PRECURSOR_DEFAULTS.scale,
    isotope_errors: Sequence[int] = PRECURSOR_DEFAULTS.isotope_errors,
    reduction: str = PRECURSOR_DEFAULTS.reduction,
    backend: str = "auto",
    check_values: bool = True,
) -> torch.Tensor:
    """Log-scaled ppm error of the predicted precursor m/z: ``scale * log1p(ppm / scale)``.

    The maths is :func:`peptide_losses.reference.precursor_mass_loss`.

    Args:
        logits: (B, L, V) float over the vocabulary, or None with ``residue_masses``.
        precursor_mz: (B,) observed precursor m/z (float64 recommended).
        charge: (B,) integer precursor charge >= 1.
        masses: (V,) token masses in Da or the :class:`Vocabulary`; required with logits.
        mask: (B, L) bool, True at real positions (default all).
        residue_masses: (B, L) per-position masses in Da, instead of logits.
        scale: ppm scale of the log (100 by default).
        isotope_errors: k values; the ppm is the smallest against
            ``precursor_mz - k * 1.00335 / charge``.
        reduction: ``"mean"`` over spectra with a position, ``"sum"`` or ``"none"`` (B,).
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
        check_values: check for NaN/inf and out-of-range values (one host sync).

    Returns:
        float32 loss (float64 for float64 input), log-scaled ppm; scalar or (B,).
    """
    mask, masses = _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check_values)
    check_options(scale=scale, isotope_errors=isotope_errors, reduction=reduction)
    options = dict(scale=float(scale), isotope_errors=tuple(int(k) for k in isotope_errors), reduction=reduction)
    if resolve_backend(backend, mask.device) == "triton":
        from .precursor_op import precursor_mass_loss_fused

        return precursor_mass_loss_fused(logits, masses, residue_masses, mask, precursor_mz, charge, **options)
    return reference.precursor_mass_loss(
        _residue_masses(logits, masses, residue_masses), mask, precursor_mz, charge, **options
    )


@torch.no_grad()
def precursor_ppm(
    logits: torch.Tensor | None,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    *,
    masses: torch.Tensor | Vocabulary | None = None,
    mask: torch.Tensor | None = None,
    residue_masses: torch.Tensor | None = None,
    isotope_errors: Sequence[int] = PRECURSOR_DEFAULTS.isotope_errors,
    check_values: bool = True,
) -> torch.Tensor:
    """Absolute precursor error (B,) in ppm, for monitoring (no gradient).

    Same arguments as :func:`precursor_mass_loss`; the formula is
    :func:`peptide_losses.reference.precursor_ppm`.
    """
    mask, masses = _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check_values)
    check_options(isotope_errors=isotope_errors, reduction="none")
    return reference.precursor_ppm(
        _residue_masses(logits, masses, residue_masses), mask, precursor_mz, charge, isotope_errors=tuple(isotope_errors)
    )
