"""Public functional entry points of both losses.

Each function checks its arguments (naming the offending one), then runs the
fused Triton kernel or the reference maths of :mod:`peptide_losses.reference`
(``backend="auto"`` picks the kernel for CUDA tensors). Both give the same
numbers; the kernel keeps no (B, L, V) or (B, N, M) tensor.

Type, shape, dtype, device and option errors are raised at once, without
touching the device. Bad values (:mod:`peptide_losses.checks`) make the
spectrum's loss NaN on both backends, with no host sync; ``check_values=True``
raises a ValueError naming the argument instead, at the cost of one host sync.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import reference
from .checks import (
    as_bool_mask,
    bad_charge,
    bad_intensity,
    bad_peak_mz,
    bad_positions,
    bad_precursor_mz,
    check_float,
    check_integer_tensor,
    check_same_device,
    check_shape,
    raise_on_bad_values,
    real_peaks,
    resolve_backend,
    value_checks_enabled,
)
from .options import precursor_options, spectrum_options
from .reference import PRECURSOR_DEFAULTS, SPECTRUM_DEFAULTS
from .vocabulary import Vocabulary

def _position_checks(logits, masses, residue_masses, mask) -> list:
    """``check_values=True``: the bad position masses (:mod:`peptide_losses.checks`), by argument."""
    if logits is None:
        return [("residue_masses contain NaN or inf at an unmasked position",
                 lambda: bad_positions(residue_masses.to(reference.compute_dtype(residue_masses)), mask))]
    return [("masses contain NaN or inf", lambda: (~torch.isfinite(masses)).any() & mask.any(-1)),
            ("logits give a NaN or inf expected mass at an unmasked position (NaN or +inf logits, or a row of -inf)",
             lambda: bad_positions(reference.expected_residue_masses(logits, masses), mask))]


def _prediction(logits, masses, residue_masses, mask, checks: list):
    """Validate the predicted side; return (B, L, bool mask, masses).

    Exactly one of ``logits`` (with ``masses``) and ``residue_masses`` is given.
    An integer mask's 0/1 check is appended to ``checks`` (value checks, one sync).
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
        if masses.device != logits.device:
            check_same_device(logits=logits, masses=masses)
        batch, length = logits.shape[:2]
        device = logits.device
    else:
        if masses is not None:
            raise ValueError("masses is only used with logits; residue_masses are already in Da")
        check_float("residue_masses", residue_masses, 2)
        batch, length = residue_masses.shape
        device = residue_masses.device
    mask = as_bool_mask("mask", mask, (batch, length), device, checks)
    if mask.device != device:
        check_same_device(prediction=torch.empty(0, device=device), mask=mask)
    return batch, length, mask, masses


def _prediction_tensor(logits, residue_masses):
    """What the kernels read: the logits (with masses), or the residue masses (masses is None then)."""
    return logits if logits is not None else residue_masses


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
    check_values: bool = False,
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
        mask: (B, L) bool, True at real positions (default all); 0/1 integers
            are read as nonzero = True, checked to hold only 0 and 1 with check_values=True.
        peak_mask: (B, N) bool, True at real peaks; None (default) reads m/z == 0
            as padding (the zero padding of Casanovo / depthcharge batches): every
            other peak is real, so a NaN, inf or negative m/z is still a bad value.
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
        check_values: raise a ValueError naming the argument where a value is
            bad, instead of the NaN loss it gives (one host sync; skipped under
            torch.compile and CUDA-graph capture).

    Returns:
        float32 loss (float64 for float64 input), in Da or ppm; scalar or (B,).
        NaN for a spectrum with a bad value (:mod:`peptide_losses.checks`:
        a non-finite mass at an unmasked position, or at a peak_mask peak an m/z
        that is not finite or <= 0 or an intensity that is not finite or < 0);
        so is the mean or sum, and the gradient at that spectrum's unmasked
        positions.
    """
    checks: list = []
    batch, _, mask, masses = _prediction(logits, masses, residue_masses, mask, checks)
    check_float("mz", mz, 2, precise=True)
    n_peaks = mz.shape[1]
    check_shape("mz", mz, (batch, n_peaks), "(B, N)")
    check_float("intensity", intensity, 2)
    check_shape("intensity", intensity, (batch, n_peaks), "(B, N)")
    peak_mask = real_peaks(peak_mask, mz, checks)
    device = mask.device
    if not (mz.device == intensity.device == peak_mask.device == device):
        check_same_device(prediction=mask, mz=mz, intensity=intensity, peak_mask=peak_mask)
    options = spectrum_options(ion_types, charges, direction, distance, distance_scale, intensity_power, reduction)
    if value_checks_enabled(check_values):
        dtype = reference.compute_dtype(logits if logits is not None else residue_masses)
        raise_on_bad_values(checks + _position_checks(logits, masses, residue_masses, mask) + [
            ("mz must be finite and > 0 at peak_mask positions",
             lambda: bad_peak_mz(mz.to(dtype), peak_mask)),
            ("intensity must be finite and >= 0 at peak_mask positions",
             lambda: bad_intensity(intensity.to(dtype), peak_mask)),
        ])
    if resolve_backend(backend, device) == "triton":
        from .ops.spectrum import spectrum_matching_loss_fused  # imports Triton: only when it runs

        return spectrum_matching_loss_fused(_prediction_tensor(logits, residue_masses), masses, mask, mz, intensity,
                                            peak_mask, options)
    return reference.spectrum_matching_loss(
        _residue_masses(logits, masses, residue_masses), mask, mz, intensity, peak_mask, **options.loss_options(),
        reduction=options.reduction,
    )


def _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check):
    """Shared validation of the precursor entry points; returns (mask, masses)."""
    checks: list = []
    batch, _, mask, masses = _prediction(logits, masses, residue_masses, mask, checks)
    check_float("precursor_mz", precursor_mz, 1, precise=True)
    check_shape("precursor_mz", precursor_mz, (batch,), "(B,)")
    check_integer_tensor("charge", charge, "(B,)")
    check_shape("charge", charge, (batch,), "(B,)")
    if not (precursor_mz.device == charge.device == mask.device):
        check_same_device(prediction=mask, precursor_mz=precursor_mz, charge=charge)
    if value_checks_enabled(check):
        dtype = reference.compute_dtype(logits if logits is not None else residue_masses)
        raise_on_bad_values(checks + _position_checks(logits, masses, residue_masses, mask) + [
            ("precursor_mz must be finite and > 0", lambda: bad_precursor_mz(precursor_mz.to(dtype))),
            ("charge must be >= 1", lambda: bad_charge(charge)),
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
    check_values: bool = False,
) -> torch.Tensor:
    """Log-scaled ppm error of the predicted precursor m/z: ``scale * log1p(ppm / scale)``.

    The maths is :func:`peptide_losses.reference.precursor_mass_loss`.

    Args:
        logits: (B, L, V) float over the vocabulary, or None with ``residue_masses``.
        precursor_mz: (B,) observed precursor m/z (float64 recommended).
        charge: (B,) integer precursor charge >= 1.
        masses: (V,) token masses in Da or the :class:`Vocabulary`; required with logits.
        mask: (B, L) bool, True at real positions (default all); 0/1 integers
            are read as nonzero = True, checked to hold only 0 and 1 with check_values=True.
        residue_masses: (B, L) per-position masses in Da, instead of logits.
        scale: ppm scale of the log (100 by default).
        isotope_errors: k values; the ppm is the smallest against
            ``precursor_mz - k * 1.00335 / charge``.
        reduction: ``"mean"`` over spectra with a position, ``"sum"`` or ``"none"`` (B,).
        backend: ``"auto"``, ``"triton"`` or ``"reference"``.
        check_values: raise a ValueError naming the argument where a value is
            bad, instead of the NaN loss it gives (one host sync; skipped under
            torch.compile and CUDA-graph capture).

    Returns:
        float32 loss (float64 for float64 input), log-scaled ppm; scalar or (B,).
        NaN for a spectrum with a bad value (:mod:`peptide_losses.checks`:
        a non-finite mass at an unmasked position, precursor_mz not finite or
        <= 0, charge < 1); so is the mean or sum, and the gradient at that
        spectrum's unmasked positions.
    """
    mask, masses = _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check_values)
    options = precursor_options(scale, isotope_errors, reduction)
    if resolve_backend(backend, mask.device) == "triton":
        from .ops.precursor import precursor_mass_loss_fused  # imports Triton: only when it runs

        return precursor_mass_loss_fused(_prediction_tensor(logits, residue_masses), masses, mask, precursor_mz,
                                         charge, options)
    return reference.precursor_mass_loss(
        _residue_masses(logits, masses, residue_masses), mask, precursor_mz, charge, **options.loss_options(),
        reduction=options.reduction,
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
    check_values: bool = False,
) -> torch.Tensor:
    """Absolute precursor error (B,) in ppm, for monitoring (no gradient); NaN where a value is bad.

    Same arguments as :func:`precursor_mass_loss`; the formula is
    :func:`peptide_losses.reference.precursor_ppm`.
    """
    mask, masses = _precursor_inputs(logits, masses, residue_masses, mask, precursor_mz, charge, check_values)
    options = precursor_options(PRECURSOR_DEFAULTS.scale, isotope_errors, "none")
    return reference.precursor_ppm(
        _residue_masses(logits, masses, residue_masses), mask, precursor_mz, charge,
        isotope_errors=options.isotope_errors,
    )
