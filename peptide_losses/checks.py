"""The error model of the public API, and the checks that apply it.

Every public entry point follows these rules: the losses and
:func:`~peptide_losses.spectrum_scores`, the decoding functions
(:mod:`peptide_losses.decoding`), the candidate adapters
(:mod:`peptide_losses.integrations.candidates`), :class:`~peptide_losses.Vocabulary`,
the modules, and the spectra code (``read_mgf``, ``collate``, ``Preprocessing``).

1. **Arguments.** A wrong type, shape, dtype, device or option is an error at
   the call (a module, a ``Preprocessing``: at construction), before any
   device work. TypeError for a wrong type, ValueError for a wrong value; the
   message names the argument, what it must be and what it got. An option
   that is a number must be one (NaN is never an option); a flag must be a
   bool (``"no"`` is not False); a count must be an integer. m/z and mass
   tensors must be float32 or float64: half precision rounds 1000 m/z to 0.5
   (fp16) and a 130 Da residue by up to 0.06 Da, far coarser than any
   tolerance.
2. **Values.** A bad value in one spectrum or one candidate does not raise:
   it makes that row's result NaN, with no host sync, and leaves the other
   rows alone. Bad values: NaN or inf where a number is meant, an m/z <= 0, a
   negative intensity, a charge < 1 (the losses' list is below); a token
   outside the vocabulary, or a residue after the end of a candidate's
   peptide (:func:`bad_candidate_positions`); a model whose next-token
   log-probabilities are NaN (``beam_search``). The losses' ``check_values=True``
   raises instead, naming the argument.
3. **Choices.** A choice among candidates (``rerank``) ranks a NaN or
   infinite combined score below every finite one and never picks it; a
   spectrum with no finite candidate is reported as such (:func:`choose`:
   index -1), never as index 0.
4. **Files.** A file that holds no spectrum or cannot be decoded is an error
   naming the file (and the line and byte); a malformed spectrum is an error
   naming the file, the spectrum (0-based index and TITLE), the field and its
   line. Duplicated or contradictory fields are errors: no value silently wins.
   Spectra are left out only on request, and counted in a warning.
5. **Vocabularies.** Indices are only read with the vocabulary that wrote
   them: logits of another width, a model's token names in another order
   (``Vocabulary.check_tokens``) and spectra tokenised with another
   vocabulary than their batch's (``collate``) are errors.

The losses' value rule in detail: the values a loss cannot use, per spectrum,
make its loss NaN, on both backends and without a host sync:

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
import math
from typing import Callable, Iterable, Sequence

import torch

from .constants import ION_TYPES
from .kernels.launch import interpreter_enabled

BACKENDS = ("auto", "triton", "reference")
DIRECTIONS = ("observed", "theoretical", "both")
DISTANCES = ("da", "ppm")
REDUCTIONS = ("mean", "sum", "none")

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def value_checks_enabled(requested: bool) -> bool:
    """Whether data-dependent checks may run now (no tracing, no graph capture); ``requested`` is
    the ``check_values`` flag of a loss."""
    check_flag("check_values", requested)
    if not requested:
        return False
    compiler = getattr(torch, "compiler", None)
    if compiler is not None and compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def check_float(name: str, t: torch.Tensor, ndim: int, *, precise: bool = False) -> None:
    """``t`` is a floating tensor of rank ``ndim``.

    ``precise=True``: m/z or masses in Da, which must be float32 or float64,
    because half precision rounds m/z 1000 to the nearest 0.5 (fp16) or 4
    (bf16), and a 130 Da residue by up to 0.06 Da (fp16), far coarser than
    any tolerance.
    """
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a floating tensor (fp16/bf16/fp32/fp64), got {t.dtype}")
    if precise and t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32 or float64 (half precision loses m/z and mass resolution), "
                        f"got {t.dtype}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(t.shape)}")


def check_integer_tensor(name: str, t, what: str) -> None:
    """``t`` is an integer tensor (not bool); ``what`` names its shape for the message."""
    if not isinstance(t, torch.Tensor) or t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer torch.Tensor {what}, got {getattr(t, 'dtype', type(t).__name__)}")


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


def check_number(name: str, value, ok: Callable[[float], bool], expected: str) -> float:
    """``value`` is a real number passing ``ok``; TypeError / ValueError naming ``name`` otherwise.

    Returns it as a float. A string is not a number here, though ``float("1")`` would read it.
    """
    try:
        number = float(value) if not isinstance(value, (str, bytes)) else None
    except (TypeError, ValueError, OverflowError, RuntimeError):  # RuntimeError: a tensor of many elements
        number = None
    if number is None:
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if not ok(number):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return number


def check_integer(name: str, value, minimum: int | None = None) -> int:
    """``value`` is an integer (an integral float such as 2.0 passes) >= ``minimum``; returns it as an int."""
    expected = "an integer" + ("" if minimum is None else f" >= {minimum}")
    number = check_number(name, value, lambda x: math.isfinite(x) and x == int(x), expected)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(number)


def check_sequence(name: str, value, expected: str) -> list:
    """``value`` is an iterable other than a string (a list, a tuple, a generator); returns it as a list."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")
    return list(value)


def check_flag(name: str, value) -> None:
    """``value`` is True or False: any other object would be read by its truth, ``"no"`` as True."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


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
        check_number("distance_scale", options["distance_scale"], lambda x: 0 < x < float("inf"),
                '"auto", None or a finite number > 0')
    if "intensity_power" in options:
        check_number("intensity_power", options["intensity_power"], lambda x: 0 <= x < float("inf"),
                     "a finite number >= 0")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if "scale" in options:
        check_number("scale", options["scale"], lambda x: 0 < x < float("inf"), "a finite number > 0")
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


# ---- candidates and choices (decoding)

def bad_candidate_positions(position: torch.Tensor) -> torch.Tensor:
    """(..., L) True at a position of a candidate's token row that comes after the peptide's end.

    ``position``: (..., L) bool, True where the token is a residue (or a token
    outside the vocabulary): not padding, not a zero-mass special token. A row
    is its peptide N->C, then only padding or special tokens (a stop token);
    a residue after them is a gap in the peptide, a bad value.
    """
    return position & ((~position).cumsum(-1) > 0)


def choose(scores: torch.Tensor) -> torch.Tensor:
    """(B,) int64 index of the best finite score of each row of ``scores`` (B, K >= 1), -1 where none is finite.

    ``argmax`` alone takes NaN for the largest value; here NaN and +-inf rank below every
    finite score and are never chosen. Ties go to the lowest index. No host sync.
    """
    finite = torch.isfinite(scores)
    best = torch.where(finite, scores, -torch.inf).argmax(1)
    return torch.where(finite.any(1), best, -1)


# ---- the device


def checked_device(name: str, what: str = "--device") -> torch.device:
    """The torch device ``name`` names, if this machine has it: ValueError naming ``what`` for a name
    torch cannot read, or CUDA where torch sees no GPU (checked before any work is done)."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"{what} {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} {name!r}: torch sees no CUDA GPU here (torch {torch.__version__}, "
                         f"CUDA build {torch.version.cuda or 'none'}); use --device cpu")
    return device


# ---- the backend

# Looked up once: what is installed does not change while running, and torch.compile
# then has no import machinery to trace (only torch versions that special-case it can).
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def triton_installed() -> bool:
    return _TRITON_INSTALLED


def check_backend(backend: str) -> None:
    """``backend`` is one of :data:`BACKENDS` (whether it can run is known only with the tensors)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"triton"`` or ``"reference"`` for tensors on ``device``.

    ``"auto"`` takes the kernels for CUDA tensors, and for CPU tensors when the
    Triton interpreter is on; otherwise the reference. ``"triton"`` where the
    kernels cannot run is an error rather than a silent fallback.
    """
    check_backend(backend)
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
