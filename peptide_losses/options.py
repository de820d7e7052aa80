"""The checked options of both losses, as the reference, the kernels and the operators take them.

:func:`spectrum_options` and :func:`precursor_options` check a call's options (TypeError /
ValueError naming a bad one) and convert them once per distinct value; the functional entry
points, the scorer and the decoding read them here, and the operators in :mod:`peptide_losses.ops`
take the resulting :class:`SpectrumOptions` / :class:`PrecursorOptions`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, NamedTuple

import torch

from .checks import check_options
from .reference import resolve_distance_scale

#: Distinct option values remembered (least recently used beyond): a sweep over many values
#: must not grow memory without bound.
CHECKED_OPTIONS = 1024


@lru_cache(maxsize=CHECKED_OPTIONS)
def _built(build: Callable, *values):
    return build(*values)


def _checked(build: Callable, values: tuple):
    """``build(*values)``, which checks and converts a call's options, once per distinct value
    (the last :data:`CHECKED_OPTIONS` kept).

    The functional entry points look options up on every call (a dict lookup once
    seen); the modules check theirs when built, so a bad option fails at
    construction. Under torch.compile they are built afresh (constant-folded by
    the tracer, no global state).
    """
    if torch.compiler.is_compiling():
        return build(*values)
    try:
        hash(values)
    except TypeError:  # an unhashable value (a list): checked and converted every time
        return build(*values)
    return _built(build, *values)


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
