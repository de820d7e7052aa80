"""The checks of the losses' arguments and of their values, shared by the public entry points.

Argument checks (types, shapes, dtypes, devices, options, the backend) are free
(no device work) and raise at once, naming the argument.

Value checks: the values a loss cannot use, per spectrum, make its loss NaN, on
both backends and without a host sync:

- position masses: the mass at an unmasked position is not finite (from logits:
  NaN or +inf logits, a row of only -inf logits, or a NaN / inf token mass;
  or a NaN / inf residue mass); a single -inf logit is a zero probability;
- spectrum loss, at real peaks (``peak_mask``; without one, every peak whose
  m/z is not 0): m/z not finite or <= 0, intensity not finite or < 0;
- precursor loss: precursor m/z not finite or <= 0, charge < 1.

Masked positions and padded peaks are never read: they may hold anything.
Values are judged in the loss's compute dtype (float32, or float64), as the
kernels read them. The ``bad_*`` functions give the rule as (B,) bool flags,
True where the spectrum has the bad value; the reference
(:mod:`peptide_losses.reference`) and the kernels turn it into NaN.
``check_values=True`` raises on the same rule instead, naming the argument,
which needs one device-to-host sync: :func:`value_checks_enabled` turns that
off inside ``torch.compile`` tracing and CUDA-graph capture, where a sync is
not allowed.
"""

from __future__ import annotations

import importlib.util
from typing import Callable, Sequence

import torch

from .constants import ION_TYPES
from .kernels.launch import interpreter_enabled

BACKENDS = ("auto", "triton", "reference")
DIRECTIONS = ("observed", "theoretical", "both")
DISTANCES = ("da", "ppm")
REDUCTIONS = ("mean", "sum", "none")

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def value_checks_enabled(requested: bool) -> bool:
    """Whether data-dependent checks may run now (no tracing, no graph capture)."""
    if not requested:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def check_float(name: str, t: torch.Tensor, ndim: int, *, mz: bool = False) -> None:
    """``t`` is a floating tensor of rank ``ndim``.

    ``mz=True``: an m/z tensor, which must be float32 or float64, because half
    precision rounds m/z 1000 to the nearest 0.5 (fp16) or 4 (bf16), far
    coarser than any fragment tolerance.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {t.dtype}")
    if mz and t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64 (half precision loses m/z resolution), got {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def check_shape(name: str, t: torch.Tensor, shape: Sequence[int], what: str) -> None:
    """``t`` has exactly ``shape``; ``what`` names the dimensions for the message."""
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {what} = {tuple(shape)}, got {tuple(t.shape)}")


def as_bool_mask(name: str, mask: torch.Tensor | None, shape: Sequence[int], device, checks: list) -> torch.Tensor:
    """A bool mask of ``shape``; None means all True; 0/1 integer masks are accepted.

    That an integer mask holds only 0 and 1 is a value check: appended to ``checks``
    (see :func:`raise_on_bad_values`), so it shares their one host sync and is
    skipped with them.
    """
    if mask is None:
        return torch.ones(tuple(shape), dtype=torch.bool, device=device)
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a bool torch.Tensor, got {type(mask).__name__}")
    check_shape(name, mask, shape, "(B, L)" if name == "mask" else "(B, N)")
    if mask.dtype == torch.bool:
        return mask
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(f"{name} must be bool (or 0/1 integers), got {mask.dtype}")
    checks.append((f"{name} must hold only 0 and 1 (or be bool)", lambda: (mask != 0) & (mask != 1)))
    return mask != 0


def real_peaks(peak_mask: torch.Tensor | None, mz: torch.Tensor, checks: list) -> torch.Tensor:
    """The (B, N) bool mask of real peaks: ``peak_mask`` checked, or, without one, every peak whose
    m/z is not 0 (zero padding, the layout of Casanovo's and depthcharge's batches; NaN, inf and
    negative m/z stay real peaks, hence bad values). The one place where "no peak_mask" is decided."""
    if peak_mask is None:
        return mz != 0
    return as_bool_mask("peak_mask", peak_mask, tuple(mz.shape), mz.device, checks)


def check_same_device(**tensors: torch.Tensor) -> None:
    """All named tensors live on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        raise ValueError(f"all tensors must be on one device, got {devices}")


def raise_on_bad_values(checks: Sequence[tuple[str, Callable[[], torch.Tensor]]]) -> None:
    """Raise naming the first failing check; one host sync for all of them.

    ``checks`` are ``(message, bad)`` pairs where ``bad()`` gives a bool tensor
    that is True somewhere iff the message applies (built lazily, so nothing is
    computed when value checks are off): (B,) flags of the ``bad_*`` functions.
    """
    if not checks:
        return
    flags = torch.stack([bad().any() for _, bad in checks])
    if bool(flags.any()):
        first = int(flags.to(torch.uint8).argmax())
        raise ValueError(checks[first][0])


def _number(name: str, value, ok: Callable[[float], bool], expected: str) -> None:
    """``value`` is a number passing ``ok``; TypeError / ValueError naming ``name`` otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {expected}, got {value!r}") from None
    if not ok(number):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _integers(name: str, values, minimum: int, distinct: bool) -> None:
    """``values`` is a non-empty sequence of integers >= minimum (distinct if asked)."""
    expected = f"a non-empty sequence of {'distinct ' if distinct else ''}integers >= {minimum}"
    try:
        items = None if isinstance(values, str) else list(values)
        ok = bool(items) and all(int(v) == v and v >= minimum for v in items)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {expected}, got {values!r}") from None
    if not ok or (distinct and len(set(items)) != len(items)):
        raise ValueError(f"{name} must be {expected}, got {values!r}")


#: The options :func:`check_options` knows.
OPTION_NAMES = ("ion_types", "charges", "direction", "distance", "distance_scale", "intensity_power",
                "scale", "isotope_errors")


def check_options(*, reduction: str, **options) -> None:
    """Option values are in range; messages name the option. Only the options passed are checked.

    Keywords are ``reduction`` and those of :data:`OPTION_NAMES`. Absent options are absent
    keys, not sentinel defaults: None is a valid distance_scale, and torch 2.11's dynamo failed
    (NotImplementedError: ObjectVariable) on ``object()`` defaults when tracing with dynamic shapes.
    """
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"check_options got unknown options {unknown}")
    if "ion_types" in options:
        ion_types = options["ion_types"]
        expected = f"a non-empty sequence of distinct members of {ION_TYPES}"
        try:
            items = None if isinstance(ion_types, str) else list(ion_types)
        except TypeError:
            raise TypeError(f"ion_types must be {expected}, got {ion_types!r}") from None
        if not items or any(t not in ION_TYPES for t in items) or len(set(items)) != len(items):
            raise ValueError(f"ion_types must be {expected}, got {ion_types!r}")
    if "charges" in options:
        _integers("charges", options["charges"], 1, distinct=True)
    if "direction" in options and options["direction"] not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {options['direction']!r}")
    if "distance" in options and options["distance"] not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {options['distance']!r}")
    if options.get("distance_scale") not in (None, "auto"):
        _number("distance_scale", options["distance_scale"], lambda x: 0 < x < float("inf"),
                '"auto", None or a finite number > 0')
    if "intensity_power" in options:
        _number("intensity_power", options["intensity_power"], lambda x: 0 <= x < float("inf"), "a finite number >= 0")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if "scale" in options:
        _number("scale", options["scale"], lambda x: 0 < x < float("inf"), "a finite number > 0")
    if "isotope_errors" in options:
        _integers("isotope_errors", options["isotope_errors"], 0, distinct=False)


# ---- values: what makes a spectrum's loss NaN

def _not_positive_finite(t: torch.Tensor) -> torch.Tensor:
    """NaN, inf or <= 0."""
    return ~((t > 0) & (t < torch.inf))


def bad_positions(position_masses: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A non-finite mass (B, L), in Da, at an unmasked position."""
    return (mask & ~torch.isfinite(position_masses)).any(-1)


def bad_peak_mz(mz: torch.Tensor, peak_mask: torch.Tensor) -> torch.Tensor:
    """A real peak's m/z (B, N), in the compute dtype, is not finite or is <= 0."""
    return (peak_mask & _not_positive_finite(mz)).any(-1)


def bad_intensity(intensity: torch.Tensor, peak_mask: torch.Tensor) -> torch.Tensor:
    """A real peak's intensity (B, N), in the compute dtype, is not finite or is < 0."""
    return (peak_mask & ~((intensity >= 0) & (intensity < torch.inf))).any(-1)


def bad_precursor_mz(precursor_mz: torch.Tensor) -> torch.Tensor:
    """The precursor m/z (B,), in the compute dtype, is not finite or is <= 0."""
    return _not_positive_finite(precursor_mz)


def bad_charge(charge: torch.Tensor) -> torch.Tensor:
    """The integer precursor charge (B,) is < 1."""
    return charge < 1


# ---- the backend

# Looked up once: what is installed does not change while running, and torch.compile
# then has no import machinery to trace (only torch versions that special-case it can).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_installed() -> bool:
    return _TRITON_INSTALLED


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"triton"`` or ``"reference"`` for tensors on ``device``.

    ``"auto"`` takes the kernels for CUDA tensors, and for CPU tensors when the
    Triton interpreter is on; otherwise the reference. ``"triton"`` where the
    kernels cannot run is an error rather than a silent fallback.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return "reference"
    if not triton_installed():
        # setup.py installs triton on Linux only, the one platform it publishes wheels for.
        reason = "triton is not installed (it has wheels for Linux only: there, pip install 'triton>=3.2')"
    elif device.type == "cuda" or (device.type == "cpu" and interpreter_enabled()):
        return "triton"
    elif device.type == "cpu":
        reason = "the tensors are on the CPU and TRITON_INTERPRET=1 is not set"
    else:
        reason = f"the kernels do not run on {device.type} tensors"
    if backend == "triton":
        raise ValueError(f"backend='triton' cannot run here: {reason}; use backend='auto' or 'reference'")
    return "reference"
