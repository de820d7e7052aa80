"""The float32 error model of the spectrum matching loss against its exact (float64) value.

For the observed direction in Da, with float32 inputs (residue masses or logits)
whose float64 reading is the exact input; u = 2^-24, the unit roundoff of float32.

- **Ions.** Kernel and reference take prefix and suffix sums S in float64 and
  round them once; an ion is then ``((fl(S) + offset) + z * proton) / z`` in
  float32: at most ``u (gamma_z t + 30 Da)`` from the exact m/z t, with
  gamma_z = 3 when z is a power of two (exact division) and 5 otherwise (one
  rounding to divide, two on CUDA, which multiplies by a rounded 1 / z); the
  30 Da cover an a ion's negative offset. The peaks' float32 m/z are exact
  on both sides.
- **Ambiguous peaks.** A peak closer to its exact nearest ion than that ion's
  bound (the sign of o - t is rounding's choice), or whose two nearest ions'
  distances differ by less than the sum of their bounds (which ion it takes),
  may legitimately get another gradient; :func:`nearest_ions` flags them and
  the tests mask them out. Peaks within 1 mDa of an ion and outside that band
  stay: the near-match regime of a small ``distance_scale``.
- **Value.** ``f(d) = tau log1p(d / tau)`` is 1-Lipschitz, so each peak's term
  moves by at most its ion's bound, plus a few roundings of the term: per
  spectrum ``sum_i w_i / W (delta_i + 5 u d_i) + (2 n + 8) u |loss|`` (n peaks).
- **Gradient w.r.t. residue masses.** A peak's slope ``w_i / W f'(d_i) sign / z``
  moves by at most ``w_i / W (delta_i / tau + (n + L + 6) u) / z`` (|f''| <=
  1 / tau, no such term without tau; the sums over peaks and positions round), on the positions
  its ion depends on: the bound is the gradient of ``sum_i c_i t_i`` with those
  coefficients c_i.
- **The float64 reference** is exact to ~2^-53 relative; where its gradient
  terms cancel (a suffix ion's d(total - P)/dm = 1 - 1) it leaves ~1e-18 where
  float32 gives 0: every gradient bound has a floor of 2^-40 per unit of upstream.
- **Gradient w.r.t. logits.** The backward writes ``c_l p (m - E)`` in float32:
  per position, the mass gradient's bound times ``||p (m - E)||``, plus
  ``|c_l| (V + 8) u (||p (m - E)|| + ||p m|| + E ||p||)`` for the rounding of
  p, m and E, plus one ulp of the logits' dtype (the gradient's rounding; the
  Triton interpreter's bf16 conversion is not always round-to-nearest).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from peptide_losses import reference

U = 2.0**-24
#: Largest negative ion offset (a ions: -CO), Da.
OFFSET_ALLOWANCE = 30.0
#: The float64 reference's rounding where its gradient terms cancel, per unit of upstream gradient.
FLOAT64_FLOOR = 2.0**-40
#: Half-width of the near-match window, Da.
NEAR = 1e-3


def ion_charges(options: dict, length: int, device) -> torch.Tensor:
    """(M,) the charge of each ion column of :func:`reference.fragment_mz`'s layout."""
    charges = torch.tensor(options["charges"], dtype=torch.float64, device=device)
    return charges.repeat(len(options["ion_types"])).repeat_interleave(length)


def ion_bounds(ions: torch.Tensor, charges: torch.Tensor) -> torch.Tensor:
    """(B, M) how far (Da) a float32 fragment m/z may sit from the exact one."""
    power_of_two = (charges.long() & (charges.long() - 1)) == 0
    gamma = torch.where(power_of_two, 3.0, 5.0)
    return U * (gamma * ions.abs() + OFFSET_ALLOWANCE)


@dataclass
class NearestIons:
    """Per peak (B, N): exact nearest valid ion, its distance and bound, and whether rounding may change
    either; per ion (B, M): exact m/z and validity."""

    index: torch.Tensor
    distance: torch.Tensor
    bound: torch.Tensor
    ambiguous: torch.Tensor
    ions: torch.Tensor
    valid: torch.Tensor


def nearest_ions(exact_masses: torch.Tensor, mask: torch.Tensor, mz: torch.Tensor, peak_mask: torch.Tensor,
                 options: dict) -> NearestIons:
    """The exact (float64) observed-direction search of float64 residue masses (B, L) against peaks (B, N)."""
    ions, valid = reference.fragment_mz(exact_masses.detach(), mask, options["ion_types"], options["charges"])
    batch = ions.shape[0]
    # Two padding columns (never valid, bound 0), so that every search has a second-nearest.
    pad = torch.zeros(batch, 2, dtype=ions.dtype, device=ions.device)
    bounds = torch.cat([ion_bounds(ions, ion_charges(options, mask.shape[1], ions.device)), pad], dim=-1)
    diff = (mz.double()[:, :, None] - torch.cat([ions, pad], dim=-1)[:, None, :]).abs()
    searchable = torch.cat([valid, pad.bool()], dim=-1)[:, None, :] & peak_mask[:, :, None]
    two = torch.where(searchable, diff, torch.inf).topk(2, dim=-1, largest=False)
    first, second = (bounds.gather(1, two.indices[..., k]) for k in (0, 1))
    distance = two.values[..., 0]
    # inf - inf (no ion at all) is NaN: not ambiguous, both give 0.
    ambiguous = peak_mask & ((distance <= first) | (two.values[..., 1] - distance <= first + second))
    index = two.indices[..., 0].clamp_max(max(ions.shape[1] - 1, 0))
    return NearestIons(index, distance, first, ambiguous, ions, valid)


def near_peaks(ions: torch.Tensor, valid: torch.Tensor, mz: torch.Tensor, fraction: float,
               gen: torch.Generator) -> torch.Tensor:
    """``mz`` (float32) with about ``fraction`` of its peaks (in spectra with an ion) moved to within
    NEAR Da of a random valid exact ion."""
    batch, n_peaks = mz.shape
    if not (ions.shape[1] and n_peaks):
        return mz
    weights = valid.double().cpu()
    has_ion = weights.sum(-1) > 0
    pick = torch.multinomial(torch.where(has_ion[:, None], weights, 1.0), n_peaks, replacement=True, generator=gen)
    offset = NEAR * (2 * torch.rand(batch, n_peaks, generator=gen, dtype=torch.float64) - 1)
    chosen = (torch.rand(batch, n_peaks, generator=gen) < fraction) & has_ion[:, None]
    moved = ions.gather(1, pick.to(ions.device)) + offset.to(ions.device)
    return torch.where(chosen.to(mz.device), moved.float(), mz)


def _weights(intensity: torch.Tensor, peak_mask: torch.Tensor, power: float) -> torch.Tensor:
    """w_i / W per peak, float64 (0 at padding and in spectra of zero total weight)."""
    w = torch.where(peak_mask, intensity.double() ** power, 0)
    total = w.sum(-1, keepdim=True)
    return torch.where(total > 0, w / torch.where(total > 0, total, 1), 0)


def value_bound(nearest: NearestIons, intensity: torch.Tensor, peak_mask: torch.Tensor, options: dict,
                exact_loss: torch.Tensor) -> torch.Tensor:
    """(B,) how far (Da) a float32 per-spectrum loss may sit from the exact one."""
    share = _weights(intensity, peak_mask, options["intensity_power"])
    found = peak_mask & torch.isfinite(nearest.distance)  # no ion: the loss is 0 on both sides
    terms = share * (nearest.bound + 5 * U * torch.where(found, nearest.distance, 0))
    n_peaks = peak_mask.sum(-1)
    return terms.sum(-1) + (2 * n_peaks + 8) * U * exact_loss.double().abs()


def mass_gradient_bound(exact_masses: torch.Tensor, mask: torch.Tensor, nearest: NearestIons,
                        intensity: torch.Tensor, peak_mask: torch.Tensor, options: dict,
                        upstream: torch.Tensor) -> torch.Tensor:
    """(B, L) how far a float32 gradient of ``sum_b upstream_b loss_b`` w.r.t. residue masses may sit
    from the exact one (1 at each position per Da of its mass)."""
    share = _weights(intensity, peak_mask, options["intensity_power"])
    n_peaks, length = peak_mask.sum(-1, keepdim=True), mask.shape[1]
    tau = options["distance_scale"]
    # Without tau the slope is the sign alone, which unambiguous peaks share.
    slope = (0 if tau is None else nearest.bound / tau) + (n_peaks + length + 6) * U
    found = torch.isfinite(nearest.distance)  # peaks of spectra without an ion add nothing
    coefficient = torch.where(found, upstream.double().abs()[:, None] * share * slope, 0).detach()
    masses = exact_masses.detach().clone().requires_grad_(True)
    ions, _ = reference.fragment_mz(masses, mask, options["ion_types"], options["charges"])
    if not ions.shape[1]:
        return torch.zeros_like(masses)
    (grad,) = torch.autograd.grad((coefficient * ions.gather(1, nearest.index)).sum(), masses)
    return grad + FLOAT64_FLOOR * upstream.double().abs()[:, None]


def logits_gradient_bound(logits: torch.Tensor, masses: torch.Tensor, mask: torch.Tensor,
                          mass_bound: torch.Tensor, mass_gradient: torch.Tensor) -> torch.Tensor:
    """(B,) how far (2-norm per spectrum) a gradient w.r.t. logits may sit from the exact one, given the
    mass gradient's exact value (B, L) and bound (B, L)."""
    p = torch.softmax(logits.double(), dim=-1)
    m = masses.double()
    expected = p @ m
    q = p * (m - expected[..., None])
    vocab = logits.shape[-1]
    q_norm = q.norm(dim=-1)
    rounding = (vocab + 8) * U * (q_norm + (p * m).norm(dim=-1) + expected.abs() * p.norm(dim=-1))
    exact = mass_gradient.double().abs()
    row = mass_bound * q_norm + exact * rounding + torch.finfo(logits.dtype).eps * exact * q_norm
    return torch.where(mask, row, 0).norm(dim=-1)
