"""Argument checks shared by the public entry points.

Shape, dtype and device checks are free (no device work). Value checks (NaN,
charge < 1, ...) need one device-to-host sync; :func:`value_checks_enabled`
turns them off inside ``torch.compile`` tracing and CUDA-graph capture, where a
sync is not allowed, and the public functions take ``check_values=False`` for
hot loops over trusted data.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .reference import DIRECTIONS, DISTANCES, ION_TYPES, REDUCTIONS

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def value_checks_enabled(requested: bool) -> bool:
    """Whether data-dependent checks may run now (no tracing, no graph capture)."""
    if not requested:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def check_float(name: str, t: torch.Tensor, ndim: int) -> None:
    """``t`` is a floating tensor of rank ``ndim``."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def check_shape(name: str, t: torch.Tensor, shape: Sequence[int], what: str) -> None:
    """``t`` has exactly ``shape``; ``what`` names the dimensions for the message."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {what} = {tuple(shape)}, got {tuple(t.shape)}")


def as_bool_mask(name: str, mask: torch.Tensor | None, shape: Sequence[int], device) -> torch.Tensor:
    """A bool mask of ``shape``; None means all True; 0/1 integer masks are accepted."""
    if mask is None:
        return torch.ones(tuple(shape), dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    check_shape(name, mask, shape, "(B, L)" if name == "mask" else "(B, N)")
    if mask.dtype == torch.bool:
        return mask
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(f"{name} must be bool (or 0/1 integers), got {mask.dtype}")
    if value_checks_enabled(True) and bool(((mask != 0) & (mask != 1)).any()):
        raise ValueError(f"{name} must hold only 0 and 1 (or be bool)")
    return mask != 0


def check_same_device(**tensors: torch.Tensor) -> None:
    """All named tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")


def raise_on_bad_values(checks: Sequence[tuple[str, Callable[[], torch.Tensor]]]) -> None:
    """Raise naming the first failing check; one host sync for all of them.

    ``checks`` are ``(message, bad)`` pairs where ``bad()`` gives a bool tensor
    that is True somewhere iff the message applies (built lazily, so nothing is
    computed when value checks are off).
    """
    if not checks:
        return
    flags = torch.stack([bad().any() for _, bad in checks])
    if bool(flags.any()):
        first = int(flags.to(torch.uint8).argmax())
        raise ValueError(checks[first][0])


def not_finite(t: torch.Tensor) -> torch.Tensor:
    return ~torch.isfinite(t)


def check_options(
    *,
    ion_types: Sequence[str] | None = None,
    charges: Sequence[int] | None = None,
    direction: str | None = None,
    distance: str | None = None,
    distance_scale: float | None = None,
    intensity_power: float | None = None,
    reduction: str,
    scale: float | None = None,
    isotope_errors: Sequence[int] | None = None,
) -> None:
    """Option values are in range; messages name the option."""
    if ion_types is not None:
        if isinstance(ion_types, str) or len(ion_types) == 0:
            raise ValueError(f"ion_types must be a non-empty sequence of {ION_TYPES}, got {ion_types!r}")
        bad = [t for t in ion_types if t not in ION_TYPES]
        if bad or len(set(ion_types)) != len(ion_types):
            raise ValueError(f"ion_types must be distinct members of {ION_TYPES}, got {tuple(ion_types)}")
    if charges is not None:
        if len(charges) == 0 or any(int(z) != z or z < 1 for z in charges) or len(set(charges)) != len(charges):
            raise ValueError(f"charges must be distinct integers >= 1, got {tuple(charges)}")
    if direction is not None and direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if distance is not None and distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if distance_scale is not None and not (float(distance_scale) > 0 and float(distance_scale) < float("inf")):
        raise ValueError(f"distance_scale must be None or a finite number > 0, got {distance_scale!r}")
    if intensity_power is not None and not (0 <= float(intensity_power) < float("inf")):
        raise ValueError(f"intensity_power must be a finite number >= 0, got {intensity_power!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if scale is not None and not (float(scale) > 0 and float(scale) < float("inf")):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if isotope_errors is not None:
        if len(isotope_errors) == 0 or any(int(k) != k or k < 0 for k in isotope_errors):
            raise ValueError(f"isotope_errors must be a non-empty sequence of integers >= 0, got {tuple(isotope_errors)}")
