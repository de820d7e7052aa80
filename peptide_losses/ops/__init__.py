"""The fused losses as PyTorch operators: one file per loss, :mod:`.spectrum` and :mod:`.precursor`;
here, the losses' checked options and how the operators are registered.

Each file holds the loss's ``torch.autograd.Function`` (the eager
path) and its ``torch.library`` operators ``peptide_losses::<loss>_forward`` /
``_backward`` joined by registered autograd (the compiled path), both over the
same kernel launcher. Under ``torch.compile(..., fullgraph=True)`` the operators
are in its graph without a break, and autocast leaves their inputs alone (no
autocast rule is registered: bf16 logits stay bf16, float64 m/z stay float64;
the kernels compute in float32). Outside tracing the autograd.Function calls the
launchers without the custom-op dispatcher, whose host time per call is more
than both kernels' device time (benchmarks/NOTES.md, "Host path of one eager
call"), and reduces over spectra inside the forward kernel.

The options live here and the two files are imported on first use of the kernels
(the options serve the reference backend too): importing the kernels imports
Triton (a second or so), registering a ``triton_op`` does as well, and Triton reads
``TRITON_INTERPRET`` when a kernel is defined.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ..checks import check_options, interpreter_enabled
from ..reference import resolve_distance_scale

NAMESPACE = "peptide_losses"

_CHECKED: dict = {}


def _checked(build: Callable, values: tuple):
    """``build(*values)``, which checks and converts a call's options, once per distinct value.

    The functional entry points look options up on every call (a dict lookup once
    seen); the modules check theirs when built, so a bad option fails at
    construction. Under torch.compile they are built afresh (constant-folded by
    the tracer, no global state).
    """
    if torch.compiler.is_compiling():
        return build(*values)
    key = (build, *values)
    try:
        found = _CHECKED.get(key)
    except TypeError:  # an unhashable value (a list): checked and converted every time
        return build(*values)
    if found is None:
        found = _CHECKED[key] = build(*values)
    return found


class SpectrumOptions(NamedTuple):
    """Options of :func:`peptide_losses.spectrum_matching_loss`, checked, as the reference takes them."""

    ion_types: tuple
    charges: tuple
    direction: str
    distance: str
    distance_scale: float | None
    intensity_power: float
    reduction: str

    def loss_options(self) -> dict:
        """Keyword options of the reference and the kernel launcher, without ``reduction``."""
        return dict(ion_types=self.ion_types, charges=self.charges, direction=self.direction, distance=self.distance,
                    distance_scale=self.distance_scale, intensity_power=self.intensity_power)

    def operator_arguments(self) -> tuple:
        """As the operator schema takes them (torch infers no str[]: ion types as one string)."""
        return ("".join(self.ion_types), list(self.charges), self.direction, self.distance, self.distance_scale,
                self.intensity_power)


def _build_spectrum(ion_types, charges, direction, distance, distance_scale, intensity_power, reduction):
    # Checked before tuple(): a string "by" would otherwise become ("b", "y").
    check_options(ion_types=ion_types, charges=charges, direction=direction, distance=distance,
                  distance_scale=distance_scale, intensity_power=intensity_power, reduction=reduction)
    tau = resolve_distance_scale(distance, distance_scale)
    return SpectrumOptions(tuple(ion_types), tuple(int(z) for z in charges), direction, distance,
                           None if tau is None else float(tau), float(intensity_power), reduction)


def spectrum_options(ion_types, charges, direction, distance, distance_scale, intensity_power,
                     reduction) -> SpectrumOptions:
    """The checked options (TypeError / ValueError naming a bad one)."""
    return _checked(_build_spectrum, (ion_types, charges, direction, distance, distance_scale,
                                            intensity_power, reduction))


class PrecursorOptions(NamedTuple):
    """Options of :func:`peptide_losses.precursor_mass_loss`, checked, as the reference takes them."""

    scale: float
    isotope_errors: tuple
    reduction: str

    def loss_options(self) -> dict:
        """Keyword options of the reference and the kernel launcher, without ``reduction``."""
        return dict(scale=self.scale, isotope_errors=self.isotope_errors)

    def operator_arguments(self) -> tuple:
        """As the operator schema takes them."""
        return (self.scale, list(self.isotope_errors))


def _build_precursor(scale, isotope_errors, reduction):
    check_options(scale=scale, isotope_errors=isotope_errors, reduction=reduction)
    return PrecursorOptions(float(scale), tuple(int(k) for k in isotope_errors), reduction)


def precursor_options(scale, isotope_errors, reduction) -> PrecursorOptions:
    """The checked options (TypeError / ValueError naming a bad one)."""
    return _checked(_build_precursor, (scale, isotope_errors, reduction))


def operator_api() -> str:
    """Which torch API registers the operators: ``"triton_op"`` (torch >= 2.6, compiled kernels:
    Inductor sees the Triton kernels themselves, :func:`peptide_losses.kernels.launch.traceable`, and
    the fake implementation is the launcher run on fake tensors) or ``"custom_op"`` (torch 2.4 / 2.5,
    or kernels under ``TRITON_INTERPRET=1``, which torch cannot trace into: opaque to the compiler,
    with the given fake implementation)."""
    return "triton_op" if hasattr(torch.library, "triton_op") and not interpreter_enabled() else "custom_op"


def operator(name: str, fake: Callable):
    """Decorator: the function as the operator ``peptide_losses::<name>`` of :func:`operator_api`.
    Its annotations are the schema; ``fake`` gives the outputs' shapes and dtypes from the inputs'."""

    def register(implementation: Callable):
        if operator_api() == "triton_op":
            return torch.library.triton_op(f"{NAMESPACE}::{name}", implementation, mutates_args=())
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", implementation, mutates_args=())
        op.register_fake(fake)
        return op

    return register


def gradient_fake(x: torch.Tensor, *_) -> torch.Tensor:
    """Shape of every backward operator's result: x's shape and dtype, contiguous."""
    return x.new_empty(x.shape)
