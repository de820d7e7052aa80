"""The fused spectrum matching loss as the custom operators ``peptide_losses::spectrum_matching_loss_*``.

Forward keeps only d loss_b / d m_l, shape (B, L), for backward, which
recomputes the softmax from the logits. Eager calls reduce inside the forward
kernel; under torch.compile the reduction is the reference's torch ops (no
host sync either way). How the operators are
registered (and what torch.compile sees) is :mod:`peptide_losses.custom_ops`.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .call_options import SpectrumOptions
from .custom_ops import register_loss
from .kernels.spectrum import spectrum_backward, spectrum_forward
from .reference import compute_dtype


def _forward(
    x: torch.Tensor,
    masses: Optional[torch.Tensor],
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    ion_types: str,
    charges: List[int],
    direction: str,
    distance: str,
    distance_scale: Optional[float],
    intensity_power: float,
    need_grad: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:
    return spectrum_forward(x, masses, mask, mz, intensity, peak_mask, ion_types=tuple(ion_types),
                            charges=tuple(charges), direction=direction, distance=distance,
                            distance_scale=distance_scale, intensity_power=intensity_power, need_grad=need_grad)


def _forward_fake(x, masses, mask, mz, intensity, peak_mask, ion_types, charges, direction, distance,
                  distance_scale, intensity_power, need_grad):
    batch, length = x.shape[:2]
    dtype = compute_dtype(x)
    return x.new_empty((2, batch), dtype=dtype), x.new_empty((batch, length) if need_grad else (0,), dtype=dtype)


def _eager_forward(options: SpectrumOptions, x, masses, mask, mz, intensity, peak_mask, need_grad):
    """(loss, dloss_b/dm_l (B, L), the rows holding the mean's denominator or None, its index) from one launch."""
    batch = x.shape[0]
    rows, grad_mass = spectrum_forward(x, masses, mask, mz, intensity, peak_mask, **options.loss_options(),
                                       need_grad=need_grad, reduction=options.reduction)
    if options.reduction == "none":
        return rows[0], grad_mass, None, {}
    if options.reduction == "sum":
        return rows[2 * batch], grad_mass, None, {}
    return rows[2 * batch], grad_mass, rows, {"denominator_index": 2 * batch + 1}


#: (options, (x, masses, mask, mz, intensity, peak_mask), (need_grad,)) -> loss. Its operator ``.op``
#: (x, masses, mask, mz, intensity, peak_mask, ion_types, charges, direction, distance,
#: distance_scale, intensity_power, need_grad) gives ((2, B) rows loss, counted; (B, L) dloss_b/dm_l)
#: (see :func:`peptide_losses.kernels.spectrum.spectrum_forward`). ion_types is one string of
#: one-letter types ("by"): operator schemas inferred by torch have no str[].
spectrum_loss = register_loss("spectrum_matching_loss", _forward, _forward_fake, spectrum_backward,
                              mass_gradient=lambda outputs: outputs[1],
                              loss_rows=lambda outputs: (outputs[0][0], outputs[0][1]),
                              eager_forward=_eager_forward)


def spectrum_matching_loss_fused(
    logits: torch.Tensor | None,
    masses: torch.Tensor | None,
    residue_masses: torch.Tensor | None,
    mask: torch.Tensor,
    mz: torch.Tensor,
    intensity: torch.Tensor,
    peak_mask: torch.Tensor,
    options: SpectrumOptions,
) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.spectrum_matching_loss` (validated inputs).

    Args:
        logits: (B, L, V) float with ``masses`` (V,) Da, or None with
            ``residue_masses`` (B, L) Da. Gradients flow to these only.
        mask: (B, L) bool. mz: (B, N) observed m/z. intensity: (B, N) >= 0.
        peak_mask: (B, N) bool.
        options: checked options (:func:`peptide_losses.call_options.spectrum_options`).

    Returns:
        Da or ppm, float32 (float64 for float64 input): scalar for ``"mean"`` /
        ``"sum"``, (B,) for ``"none"``.
    """
    x, masses = (logits, masses) if logits is not None else (residue_masses, None)
    return spectrum_loss(options, (x, masses, mask, mz, intensity, peak_mask),
                         (torch.is_grad_enabled() and x.requires_grad,))
