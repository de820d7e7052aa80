"""The fused precursor mass loss as the custom operators ``peptide_losses::precursor_mass_loss_*``.

Forward keeps only per-spectrum numbers for backward (its (3B [+ 2]) output,
of which backward reads dloss/dM and the mean's denominator); backward
recomputes the softmax from the logits. Eager calls reduce inside the forward
kernel; under torch.compile the reduction is the reference's torch ops (no
host sync either way). How the operators are registered (and what
torch.compile sees) is :mod:`peptide_losses.custom_ops`.
"""

from __future__ import annotations

from typing import List, Optional

import torch

from .call_options import PrecursorOptions
from .custom_ops import register_loss
from .kernels.precursor import precursor_backward, precursor_forward
from .reference import compute_dtype


def _forward(
    x: torch.Tensor,
    masses: Optional[torch.Tensor],
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    scale: float,
    isotope_errors: List[int],
) -> torch.Tensor:
    return precursor_forward(x, masses, mask, precursor_mz, charge, scale=scale, isotope_errors=tuple(isotope_errors))


def _forward_fake(x, masses, mask, precursor_mz, charge, scale, isotope_errors):
    return x.new_empty((3, x.shape[0]), dtype=compute_dtype(x))


def _eager_forward(options: PrecursorOptions, x, masses, mask, precursor_mz, charge):
    """(loss, the output holding dloss/dM (B,), the same or None for the mean's denominator, their offsets)
    from one launch: dloss/dM is row 1, at element B of either layout."""
    batch = x.shape[0]
    out = precursor_forward(x, masses, mask, precursor_mz, charge, scale=options.scale,
                            isotope_errors=options.isotope_errors, reduction=options.reduction)
    if options.reduction == "none":
        return out[0], out, None, {"grad_mass_offset": batch}
    if options.reduction == "sum":
        return out[3 * batch], out, None, {"grad_mass_offset": batch}
    return out[3 * batch], out, out, {"grad_mass_offset": batch, "denominator_index": 3 * batch + 1}


#: (options, (x, masses, mask, precursor_mz, charge)) -> loss. Its operator ``.op``
#: gives the (3, B) rows loss, dloss/dM, counted (see
#: :func:`peptide_losses.kernels.precursor.precursor_forward`).
precursor_loss = register_loss("precursor_mass_loss", _forward, _forward_fake, precursor_backward,
                               mass_gradient=lambda outputs: outputs[0][1],
                               loss_rows=lambda outputs: (outputs[0][0], outputs[0][2]),
                               eager_forward=_eager_forward)


def precursor_mass_loss_fused(
    logits: torch.Tensor | None,
    masses: torch.Tensor | None,
    residue_masses: torch.Tensor | None,
    mask: torch.Tensor,
    precursor_mz: torch.Tensor,
    charge: torch.Tensor,
    options: PrecursorOptions,
) -> torch.Tensor:
    """Kernel form of :func:`peptide_losses.reference.precursor_mass_loss` (validated inputs).

    Args:
        logits: (B, L, V) float with ``masses`` (V,) Da, or None with
            ``residue_masses`` (B, L) Da. Gradients flow to these only.
        mask: (B, L) bool. precursor_mz: (B,) observed m/z. charge: (B,) integer.
        options: checked options (:func:`peptide_losses.call_options.precursor_options`).

    Returns:
        Log-scaled ppm, float32 (float64 for float64 input): scalar for
        ``"mean"`` / ``"sum"``, (B,) for ``"none"``.
    """
    x, masses = (logits, masses) if logits is not None else (residue_masses, None)
    return precursor_loss(options, (x, masses, mask, precursor_mz, charge))
