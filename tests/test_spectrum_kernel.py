"""The fused spectrum matching kernel against the reference: values, gradients, ties, edge cases.

Runs on CUDA when there is a GPU, else on CPU tensors under the Triton
interpreter (tests/conftest.py); realistic sizes only on CUDA
(``python -m benchmarks.kernels.gpu_suite``, tests/README.md). Tolerances, in relative (norm) error:

- Residue masses on a 1/8 Da grid make every float32 sum exact, so the kernel's
  fragment m/z equal the reference's bitwise on any device: exact ties, zero
  distances and peaks within 1 mDa of an ion occur, and values and gradients
  must agree within 1e-5 (sums in another order), also at distance_scale 0.02 Da.
- float32 residue masses off the grid, against the exact (float64) loss: the
  error model of tests/helpers/spectrum_error_model.py, per spectrum and per position,
  with peaks within 1 mDa of ions (those inside the model's rounding band, where
  the sign or the ion a peak takes is rounding's choice, are masked out).
- float32 logits: 1e-5 as well where float32 rounding cannot matter. The
  softmax's rounding cannot be mirrored, so the kernel's fragment m/z (from
  float64 expected masses) and torch's may differ by a float32 ulp, ~1e-4 Da at
  2000 Da. A miss of 1e-5 is then accepted within what that explains (see
  :func:`check_agreement`): values within 2 such distance slacks per spectrum,
  gradients with a distance_scale tau within 2 * slack / tau more (the slope
  1 / (1 + d / tau) is what moves); without tau the slopes are signs, and the
  peaks are drawn at least 0.01 Da from the ions so that no sign can flip. At
  realistic sizes logits are compared with the exact loss under the error model.
- float64: 1e-9, and gradcheck through the kernels.
- bf16 / fp16 logits (the reference is fed the same logits and also computes
  in float32): values as float32; gradients, rounded to the logits' dtype by
  both, within that dtype's epsilon (2^-7 bf16, 2^-10 fp16).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch
from helpers import DEVICE, examples, gpu
from helpers import spectrum_error_model as error_model
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import peptide_losses
from peptide_losses import reference
from peptide_losses.kernels import spectrum as spectrum_kernels
from benchmarks.support.synthetic import make_batch
from peptide_losses.vocabulary import Vocabulary

#: distance_scale values drawn, per distance: 0.02 Da (the trainer's, slopes of near matches) and 0.5 Da.
TAUS = {"da": (0.02, 0.5), "ppm": (50.0,)}
#: The near-match scale of the dedicated tests, Da.
NEAR_TAU = 0.02
FP32_TOLERANCE = 1e-5
FP64_TOLERANCE = 1e-9


@dataclass
class Case:
    """Inputs of one call: prediction (logits + masses, or residue masses), peaks, options."""

    logits: torch.Tensor | None
    masses: torch.Tensor | None
    residue_masses: torch.Tensor | None
    mask: torch.Tensor
    mz: torch.Tensor
    intensity: torch.Tensor
    peak_mask: torch.Tensor
    options: dict

    @property
    def prediction(self) -> torch.Tensor:
        return self.logits if self.logits is not None else self.residue_masses


@st.composite
def loss_options(draw):
    distance = draw(st.sampled_from(reference.DISTANCES))
    return dict(
        ion_types=tuple(draw(st.lists(st.sampled_from(reference.ION_TYPES), min_size=1, max_size=6, unique=True))),
        charges=tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True))),
        direction=draw(st.sampled_from(reference.DIRECTIONS)),
        distance=distance,
        distance_scale=draw(st.sampled_from([None, *TAUS[distance]])),
        intensity_power=draw(st.sampled_from([0.0, 1.0, 1.5, 2.0])),
        reduction=draw(st.sampled_from(reference.REDUCTIONS)),
    )


@dataclass(frozen=True)
class Shape:
    batch: int
    length: int
    n_peaks: int
    vocab: int | None  # None: the default vocabulary
    holes: bool  # masks with gaps, not only padding at the end
    block_n: int  # peaks per kernel tile: small tiles put ties across tile borders
    seed: int


@st.composite
def shapes(draw, max_batch=6, max_length=40, max_peaks=300):
    return Shape(
        batch=draw(st.integers(1, max_batch)),
        length=draw(st.integers(1, max_length)),
        n_peaks=draw(st.integers(0, max_peaks)),
        vocab=draw(st.sampled_from([None, 2, 29, 64])),  # 29: rows start off vector alignment
        holes=draw(st.booleans()),
        block_n=draw(st.sampled_from([16, spectrum_kernels.BLOCK_N])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _rand(gen, *shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


#: Peak kinds: 0 near (0.01-0.06 Da off an ion), 1 noise, 2 duplicate of another peak,
#: 3 exactly on an ion, 4 midpoint of two ions, 5 within 1 mDa of an ion.
PEAK_KINDS = {
    "grid": (0, 1, 2, 3, 4, 5),  # fragment m/z bitwise equal in kernel and reference: any peak
    "float32": (0, 1, 2, 5),  # compared with the exact loss: ambiguous peaks are masked out later
    "logits": (0, 1, 2),  # fragment m/z differ by rounding: no peak near a sign or ion flip
}


def make_case(shape: Shape, options: dict, *, path: str, dtype: torch.dtype = torch.float32) -> Case:
    """A random case on DEVICE; ``path`` is "logits", "grid" (residue masses on a 1/8 Da grid) or
    "float32" (residue masses 57-186 Da off the grid, whose sums round).

    Peaks are of the kinds in PEAK_KINDS[path], placed on the exact (float64) ions.
    Padded peaks hold NaN m/z and inf intensity, padded positions a wild mass.
    """
    gen = torch.Generator().manual_seed(shape.seed)
    batch, length, n_peaks = shape.batch, shape.length, shape.n_peaks
    lengths = torch.randint(0, length + 1, (batch,), generator=gen)
    short = _rand(gen, batch) < 0.3  # peptides of length 0, 1 and 2
    lengths = torch.where(short, torch.randint(0, 3, (batch,), generator=gen).clamp_max(length), lengths)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    if shape.holes:
        mask &= _rand(gen, batch, length) < 0.8
    logits = masses = residue = None
    if path == "grid":
        # Zero and negative masses give duplicate ions and m/z below 1 (the ppm clamp).
        residue = torch.randint(-160, 1601, (batch, length), generator=gen).double() / 8
        residue = torch.where(_rand(gen, batch, length) < 0.1, 0.0, residue)
    elif path == "float32":
        residue = 57 + 129 * _rand(gen, batch, length)
    else:
        masses = Vocabulary.default().mass_tensor()
        if shape.vocab is not None:
            masses = torch.cat([torch.zeros(1, dtype=torch.float64), 50 + 150 * _rand(gen, shape.vocab - 1)])
        logits = (3 * torch.randn(batch, length, masses.shape[0], generator=gen)).to(dtype)
    if residue is not None:
        residue = torch.where(mask, residue, 1e4).to(dtype)
        exact_masses = residue.double()
    else:
        exact_masses = reference.expected_residue_masses(logits.double(), masses)
    # Grid: peaks on the ions as both implementations round them (exact hits and ties); else on the exact ions.
    ions, valid = reference.fragment_mz(residue if path == "grid" else exact_masses, mask, options["ion_types"],
                                        options["charges"])
    ions = ions.double()

    kinds = torch.tensor(PEAK_KINDS[path])
    kind = kinds[torch.randint(0, len(kinds), (batch, n_peaks), generator=gen)]
    mz = 2500 * _rand(gen, batch, n_peaks)
    if ions.shape[1] and n_peaks:
        pick = torch.randint(0, ions.shape[1], (batch, n_peaks, 2), generator=gen)
        picked = ions.gather(1, pick.flatten(1)).view(batch, n_peaks, 2)
        usable = valid.gather(1, pick.flatten(1)).view(batch, n_peaks, 2).all(-1)
        sign = torch.where(_rand(gen, batch, n_peaks) < 0.5, -1, 1)
        offsets = {0: (0.01 + 0.05 * _rand(gen, batch, n_peaks)) * sign, 3: 0.0,
                   5: error_model.NEAR * _rand(gen, batch, n_peaks) * sign}
        for code, offset in offsets.items():
            mz = torch.where(usable & (kind == code), picked[..., 0] + offset, mz)
        mz = torch.where(usable & (kind == 4), picked.mean(-1), mz)
    if n_peaks:
        source = torch.randint(0, n_peaks, (batch, n_peaks), generator=gen)
        mz = torch.where(kind == 2, mz.gather(1, source), mz)
    # Negative residue masses put some ions at m/z <= 0; an observed m/z there would be a bad
    # value (NaN loss, tests/test_bad_values.py): noise instead.
    mz = torch.where(mz > 0, mz, 2500 * _rand(gen, batch, n_peaks))
    counts = torch.randint(0, n_peaks + 1, (batch,), generator=gen)
    peak_mask = torch.arange(n_peaks)[None, :] < counts[:, None]
    if shape.holes:
        peak_mask &= _rand(gen, batch, n_peaks) < 0.8
    intensity = torch.where(_rand(gen, batch, n_peaks) < 0.2, 0.0, _rand(gen, batch, n_peaks))
    intensity = torch.where(_rand(gen, batch, 1) < 0.15, 0.0, intensity)  # spectra of total weight 0
    mz = torch.where(peak_mask, mz, float("nan")).to(torch.float64 if dtype == torch.float64 else torch.float32)
    intensity = torch.where(peak_mask, intensity, float("inf")).float()

    def dev(t):
        return None if t is None else t.to(DEVICE)

    return Case(dev(logits), dev(masses), dev(residue), dev(mask), dev(mz), dev(intensity), dev(peak_mask), options)


def run(case: Case, backend: str, upstream: torch.Tensor | None = None):
    """(loss, d(upstream . loss)/d prediction) with fresh leaves; upstream: (B,) for reduction "none"."""
    leaf = case.prediction.detach().clone().requires_grad_()
    as_logits = case.logits is not None
    loss = peptide_losses.spectrum_matching_loss(
        leaf if as_logits else None, case.mz, case.intensity, masses=case.masses, mask=case.mask,
        peak_mask=case.peak_mask, residue_masses=None if as_logits else leaf, backend=backend, **case.options,
    )
    weights = torch.ones_like(loss) if upstream is None or loss.ndim == 0 else upstream.to(loss.dtype)
    (grad,) = torch.autograd.grad(loss, leaf, grad_outputs=weights)
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all(), backend
    return loss.detach(), grad


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| (||a - b|| where b is 0), in float64."""
    a, b = a.double(), b.double()
    scale = b.norm().item()
    return (a - b).norm().item() / (scale if scale > 0 else 1.0)


def upstream_for(case: Case) -> torch.Tensor:
    """A fixed uneven upstream gradient for per-spectrum losses."""
    return torch.linspace(0.5, 2.0, case.mask.shape[0], device=DEVICE)


def rounding_slack(case: Case) -> float:
    """How far (Da or ppm) float32 rounding alone may move a distance between kernel and reference.

    Where their fragment m/z cannot be made bitwise equal (softmax rounding,
    torch's CUDA cumsum) each may sit one float32 ulp off: 2 * eps * m/z in Da,
    2 * eps * 1e6 in ppm, with the largest real peak m/z (peaks near ions matter).
    """
    eps = torch.finfo(torch.float32).eps
    if case.options["distance"] == "ppm":
        return 2 * eps * 1e6
    real = case.mz[case.peak_mask]
    return 2 * eps * (real.abs().max().item() if real.numel() else 1.0)


def check_agreement(case: Case, got, want, tolerance: float, *, rounding: bool,
                    grad_tolerance: float | None = None) -> None:
    """(value, gradient) of the kernel against the reference's.

    With ``rounding`` (fragment m/z equal only up to float32 rounding), a miss of
    ``tolerance`` is accepted within what that rounding explains: the loss is a
    mean of 1-Lipschitz functions of distances, so a value moves by at most
    2 slacks per spectrum (both directions; per spectrum summed for "sum"), and a
    distance_scale tau's slope 1 / (1 + d / tau) moves by at most slack / tau.
    """
    (value, grad), (want_value, want_grad) = got, want
    assert value.dtype == want_value.dtype and value.shape == want_value.shape
    assert grad.dtype == want_grad.dtype and grad.shape == want_grad.shape
    slack = rounding_slack(case) if rounding else 0.0
    error = relative_error(value, want_value)
    spectra = case.mask.shape[0] if case.options["reduction"] == "sum" else 1
    off = (value.double() - want_value.double()).abs().max().item() if value.numel() else 0.0
    assert error < tolerance or off <= 2 * slack * spectra, f"value: relative error {error:.3g}, {off:.3g} off"
    tau = case.options["distance_scale"]
    allowed = (grad_tolerance or tolerance) + (2 * slack / tau if tau is not None else 0.0)
    error = relative_error(grad, want_grad)
    assert error < allowed, f"gradient: relative error {error:.3g} >= {allowed:.3g}"


def compare(case: Case, block_n: int, tolerance: float, **check) -> None:
    """Kernel (tiles of ``block_n`` peaks) against the reference, values and gradients."""
    upstream = upstream_for(case)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spectrum_kernels, "BLOCK_N", block_n)
        got = run(case, "triton", upstream)
    check_agreement(case, got, run(case, "reference", upstream), tolerance, **check)


def _chunks(case: Case, elements: int):
    """Slices of spectra whose (chunk, N, M) reference tensors hold about ``elements`` values each."""
    batch, length = case.mask.shape
    ions = len(case.options["ion_types"]) * len(case.options["charges"]) * length
    chunk = max(1, elements // max(1, case.mz.shape[1] * ions))
    return [slice(start, start + chunk) for start in range(0, batch, chunk)]


def _rows(case: Case, part: slice) -> Case:
    names = ("logits" if case.logits is not None else "residue_masses", "mask", "mz", "intensity", "peak_mask")
    return replace(case, **{name: getattr(case, name)[part] for name in names})


def exact_masses(case: Case) -> torch.Tensor:
    """The per-position masses (B, L) of the case in float64: exact for float32 and narrower inputs."""
    if case.logits is None:
        return case.residue_masses.double()
    return reference.expected_residue_masses(case.logits.double(), case.masses)


def nearest_ions(case: Case) -> error_model.NearestIons:
    return error_model.nearest_ions(exact_masses(case), case.mask, case.mz, case.peak_mask, case.options)


def without_ambiguous_peaks(case: Case) -> Case:
    """The case with the peaks masked out whose gradient the error model leaves to rounding."""
    ambiguous = torch.cat([nearest_ions(_rows(case, part)).ambiguous for part in _chunks(case, 2**26)])
    return replace(case, peak_mask=case.peak_mask & ~ambiguous)


def check_exact(case: Case, got, upstream: torch.Tensor) -> None:
    """(value, gradient) of a float32 run with reduction "none" and observed direction in Da, against
    the exact (float64 reference) loss, under :mod:`helpers.spectrum_error_model`'s bounds; chunked by spectra."""
    value, grad = got
    assert case.options["reduction"] == "none" and case.options["direction"] == "observed"
    assert case.options["distance"] == "da"
    for part in _chunks(case, 2**26):
        rows = _rows(case, part)
        nearest = nearest_ions(rows)
        assert not nearest.ambiguous.any(), "mask ambiguous peaks out first (without_ambiguous_peaks)"
        masses = exact_masses(rows)
        exact = Case(None, None, masses, rows.mask, rows.mz.double(), rows.intensity.double(), rows.peak_mask,
                     rows.options)
        want, want_mass_grad = run(exact, "reference", upstream[part])
        bound = error_model.value_bound(nearest, rows.intensity, rows.peak_mask, rows.options, want)
        off = (value[part].double() - want).abs()
        assert (off <= bound).all(), f"value: {(off / bound).max().item():.3g} times the bound"
        mass_bound = error_model.mass_gradient_bound(masses, rows.mask, nearest, rows.intensity, rows.peak_mask,
                                                     rows.options, upstream[part])
        if case.logits is None:
            off, bound = (grad[part].double() - want_mass_grad).abs(), mass_bound
        else:
            want_grad = run(replace(rows, logits=rows.logits.double()), "reference", upstream[part])[1]
            off = (grad[part].double() - want_grad).flatten(1).norm(dim=1)
            bound = error_model.logits_gradient_bound(rows.logits, rows.masses, rows.mask, mass_bound,
                                                      want_mass_grad)
        assert (off <= bound).all(), f"gradient: {(off / bound).max().item():.3g} times the bound"


def near_match_options(ion_types=("b", "y"), charges=(1, 2), intensity_power=1.0, distance_scale=NEAR_TAU):
    return dict(ion_types=ion_types, charges=charges, direction="observed", distance="da",
                distance_scale=distance_scale, intensity_power=intensity_power, reduction="none")


# ------------------------------------------------------------------ against the reference
@settings(max_examples=examples(60))
@given(shapes(), loss_options())
def test_grid_residue_masses_match_the_reference_with_exact_ties(shape, options):
    case = make_case(shape, options, path="grid")
    compare(case, shape.block_n, FP32_TOLERANCE, rounding=False)


@settings(max_examples=examples(40))
@given(shapes(), loss_options())
def test_float32_logits_match_the_reference(shape, options):
    case = make_case(shape, options, path="logits")
    compare(case, shape.block_n, FP32_TOLERANCE, rounding=True)


@settings(max_examples=examples(16))
@given(shapes(max_batch=4, max_length=24, max_peaks=150), loss_options(), st.sampled_from(["logits", "grid"]))
def test_float64_matches_the_reference_tightly(shape, options, path):
    case = make_case(shape, options, path=path, dtype=torch.float64)
    compare(case, shape.block_n, FP64_TOLERANCE, rounding=False)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@settings(max_examples=examples(8))
@given(shape=shapes(max_batch=4, max_length=24, max_peaks=150), options=loss_options())
def test_half_precision_logits(dtype, shape, options):
    """Half-precision logits against the reference, where the gradient fits the half type. Raw ppm to a far
    ion reaches ~1e7 per logit (a 58 m/z a ion against a peak at 1,600 m/z: 8.4e6), beyond float16's
    65,504: any backend rounds it to inf, as torch's half arithmetic does (the thorough profile drew one)."""
    case = make_case(shape, options, path="logits", dtype=dtype)
    exact = run(replace(case, logits=case.logits.float()), "reference", upstream_for(case))[1]
    assume(exact.abs().max().item() < torch.finfo(dtype).max / 2)
    compare(case, shape.block_n, FP32_TOLERANCE, rounding=True, grad_tolerance=torch.finfo(dtype).eps)


def test_a_float16_gradient_beyond_its_range_is_inf_on_both_backends():
    """The case the thorough profile drew: raw ppm from a 58 m/z a1 ion to a peak at 1,600 m/z, a float32
    gradient of +-8.4e6 per logit. In float16 both backends give +-inf there, same places and signs, and
    the same finite loss (float32, to rounding)."""
    shape = Shape(batch=1, length=2, n_peaks=1, vocab=2, holes=False, block_n=16, seed=1)
    options = {"ion_types": ("a",), "charges": (1,), "direction": "observed", "distance": "ppm",
               "distance_scale": None, "intensity_power": 0.0, "reduction": "mean"}
    case = make_case(shape, options, path="logits", dtype=torch.float16)
    out = {}
    for backend in ("reference", "triton"):
        leaf = case.logits.detach().clone().requires_grad_()
        loss = peptide_losses.spectrum_matching_loss(leaf, case.mz, case.intensity, masses=case.masses,
                                                     mask=case.mask, peak_mask=case.peak_mask, backend=backend,
                                                     **options)
        out[backend] = (loss, torch.autograd.grad(loss, leaf)[0])
    exact = run(replace(case, logits=case.logits.float()), "reference")[1]
    assert exact.abs().max() > torch.finfo(torch.float16).max
    (loss, grad), (want_loss, want_grad) = out["triton"], out["reference"]
    assert torch.isfinite(loss) and torch.allclose(loss, want_loss, rtol=1e-6)
    assert torch.equal(grad.isinf(), exact.abs() > torch.finfo(torch.float16).max)
    assert torch.equal(grad.isinf(), want_grad.isinf()) and torch.equal(grad.sign(), want_grad.sign())


@settings(max_examples=examples(24))
@given(shape=shapes(max_length=50), ion_types=st.lists(st.sampled_from(reference.ION_TYPES), min_size=1, max_size=6,
                                                       unique=True),
       charges=st.lists(st.integers(1, 3), min_size=1, max_size=3, unique=True),
       power=st.sampled_from([1.0, 2.0]), backend=st.sampled_from(["triton", "reference"]))
def test_float32_near_matches_are_within_the_error_model_of_the_exact_loss(shape, ion_types, charges, power, backend):
    options = near_match_options(tuple(ion_types), tuple(charges), power)
    case = without_ambiguous_peaks(make_case(shape, options, path="float32"))
    upstream = upstream_for(case)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spectrum_kernels, "BLOCK_N", shape.block_n)
        check_exact(case, run(case, backend, upstream), upstream)


@pytest.mark.parametrize("power", [1.0, 2.0])
@pytest.mark.parametrize("direction", reference.DIRECTIONS)
def test_near_matches_at_the_trainers_scale_on_exact_ions(direction, power):
    """distance_scale 0.02 Da, half the peaks moved within 1 mDa of an ion, bitwise-equal ions (grid masses)."""
    options = dict(near_match_options(ion_types=("b", "y", "a"), charges=(1, 2, 3), intensity_power=power),
                   direction=direction)
    case = make_case(Shape(4, 30, 200, None, True, 16, seed=21), options, path="grid")
    ions, valid = reference.fragment_mz(case.residue_masses, case.mask, options["ion_types"], options["charges"])
    case = replace(case, mz=error_model.near_peaks(ions.double(), valid, case.mz, 0.5, torch.Generator().manual_seed(1)))
    near = (case.mz[:, :, None] - torch.where(valid, ions, torch.inf)[:, None, :]).abs().amin(-1)
    assert (case.peak_mask & (near <= error_model.NEAR)).sum() >= 80  # the regime is there
    compare(case, 16, FP32_TOLERANCE, rounding=False)


@pytest.mark.parametrize("charges", [(1, 2, 3), (3,)])
def test_the_other_devices_division_rule_is_within_the_error_model(charges):
    """RECIPROCAL (m/z times a rounded 1 / z, torch's CUDA rule) runs only on CUDA by default: here it
    runs on the CPU (and the CPU's division on CUDA), against the exact loss. Both rules round z = 3
    differently from the reference of this device, so the float32 error model is the check."""
    options = near_match_options(reference.ION_TYPES, charges, 2.0)
    case = without_ambiguous_peaks(make_case(Shape(5, 24, 150, None, True, 16, seed=17), options, path="float32"))
    upstream = upstream_for(case)
    with pytest.MonkeyPatch.context() as patch:
        other_rule = not spectrum_kernels.reciprocal_division(DEVICE)
        patch.setattr(spectrum_kernels, "reciprocal_division", lambda device: other_rule)
        got = run(case, "triton", upstream)
    check_exact(case, got, upstream)


# ------------------------------------------------------------------ gradcheck (float64) through the kernels
@pytest.mark.parametrize("entry", ["logits", "residue_masses"])
@pytest.mark.parametrize("direction, reduction", [("observed", "mean"), ("theoretical", "none"), ("both", "sum")])
def test_gradcheck_through_the_kernel(entry, direction, reduction):
    """Finite differences of the float64 kernel against its analytic gradient, masks with holes.

    Peaks are at least 0.01 Da from the ions (logits path), so steps of 1e-6
    cross no |x| kink and no change of the nearest ion. Fast mode (one random
    projection of the Jacobian: two kernel calls, not two per input).
    """
    options = dict(ion_types=("b", "y", "c"), charges=(1, 2), direction=direction, distance="da",
                   distance_scale=NEAR_TAU, intensity_power=2.0, reduction=reduction)
    case = make_case(Shape(3, 7, 40, 5, True, 16, seed=5), options, path="logits", dtype=torch.float64)
    assert not case.mask.all() and not case.peak_mask.all()
    if entry == "residue_masses":
        case = replace(case, logits=None, masses=None, residue_masses=exact_masses(case))

    def loss(x):
        as_logits = case.logits is not None
        return peptide_losses.spectrum_matching_loss(
            x if as_logits else None, case.mz, case.intensity, masses=case.masses, mask=case.mask,
            peak_mask=case.peak_mask, residue_masses=None if as_logits else x, backend="triton", **case.options)

    leaf = case.prediction.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(loss, (leaf,), eps=1e-6, atol=1e-7, rtol=1e-5, fast_mode=True)


# ------------------------------------------------------------------ exact suffix ions
@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_small_suffix_ions_of_long_peptides_are_within_float32_rounding_of_the_exact_ions(backend):
    """y1..y6 of 50-residue peptides, one peak on the float64 truth of one of them per spectrum.

    Error model (u = eps / 2 of float32): S rounded once, + H2O, + proton, each
    a rounding of at most u * t, and the peak's own rounding to float32 (u * t):
    the distance is at most 4 u t = 2 eps t. A suffix subtracted in float32
    (total - P, sums of thousands of Da) sat ~1.6e-4 Da off, over 3x that at y1.
    """
    gen = torch.Generator().manual_seed(0)
    batch, length = 60, 50
    residue = (57 + 129 * torch.rand(batch, length, generator=gen, dtype=torch.float64)).float()
    mask = torch.ones(batch, length, dtype=torch.bool)
    exact, _ = reference.fragment_mz(residue.double(), mask, ("y",), (1,))
    slot = length - 2 - torch.arange(batch) % 6  # y1..y6: the cleavage before the last 1..6 residues
    target = exact.gather(1, slot[:, None])
    case = Case(None, None, residue.to(DEVICE), mask.to(DEVICE), target.to(DEVICE), torch.ones_like(target).to(DEVICE),
                torch.ones_like(target, dtype=torch.bool).to(DEVICE),
                dict(ion_types=("y",), charges=(1,), direction="observed", distance="da", distance_scale=None,
                     intensity_power=1.0, reduction="none"))
    distance, _ = run(case, backend)
    bound = 2 * torch.finfo(torch.float32).eps * target[:, 0].to(DEVICE)
    assert (distance.double() <= bound).all(), (distance.double() / bound).max().item()


# ------------------------------------------------------------------ edge cases
def _small_case(options, **edits):
    b = make_batch(3, 7, 20, seed=3, device=DEVICE)
    fields = dict(logits=b.logits, masses=b.masses, residue_masses=None, mask=b.mask, mz=b.mz,
                  intensity=b.intensity, peak_mask=b.peak_mask)
    fields.update(edits)
    return Case(options=dict(dict(ion_types=("b", "y"), charges=(1, 2), direction="both", distance="da",
                                  distance_scale=None, intensity_power=1.0, reduction="mean"), **options), **fields)


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
@pytest.mark.parametrize("direction", reference.DIRECTIONS)
@pytest.mark.parametrize("empty", ["no positions", "no peaks", "zero weight", "no peak columns"])
def test_empty_spectra_give_zero_loss_and_zero_gradient(empty, direction, reduction):
    base = _small_case({})
    edits = {
        "no positions": dict(mask=torch.zeros_like(base.mask)),
        "no peaks": dict(peak_mask=torch.zeros_like(base.peak_mask)),
        "zero weight": dict(intensity=torch.zeros_like(base.intensity)),
        "no peak columns": dict(mz=base.mz[:, :0], intensity=base.intensity[:, :0], peak_mask=base.peak_mask[:, :0]),
    }[empty]
    case = replace(base, options=dict(base.options, direction=direction, reduction=reduction), **edits)
    loss, grad = run(case, "triton", upstream_for(case))
    assert torch.equal(loss, torch.zeros_like(loss))
    assert torch.equal(grad, torch.zeros_like(grad))
    if empty != "no peak columns":  # the reference cannot search an empty peak axis
        assert torch.equal(run(case, "reference", upstream_for(case))[0], loss)


def test_empty_batch():
    base = _small_case({})
    case = replace(base, **{name: getattr(base, name)[:0] for name in
                            ("logits", "mask", "mz", "intensity", "peak_mask")})
    loss, grad = run(case, "triton")
    assert loss.item() == 0.0 and grad.shape == case.logits.shape


def test_ties_go_to_the_lowest_ion_and_exact_hits_have_no_gradient():
    # Positions 1 and 2 have mass 0: b2 = b3 and y2 = y3 are the same m/z; the
    # observed tie must pick slot 1 (lower index), as torch.argmin does. A peak
    # exactly on b1 has distance 0 and no gradient.
    residue = torch.tensor([[100.0, 0.0, 0.0, 150.0, 125.0]], device=DEVICE)
    mask = torch.ones_like(residue, dtype=torch.bool)
    ions, _ = reference.fragment_mz(residue, mask, ("b",), (1,))
    mz = torch.stack([ions[0, 0], ions[0, 1] + 0.25, ions[0, 3] - 0.5])[None]  # ions 0, 1 and 2 are equal
    case = Case(None, None, residue, mask, mz, torch.ones_like(mz), torch.ones_like(mz, dtype=torch.bool),
                dict(ion_types=("b",), charges=(1,), direction="observed", distance="da", distance_scale=None,
                     intensity_power=1.0, reduction="sum"))
    loss, grad = run(case, "triton")
    assert loss.item() == pytest.approx((0.25 + 0.5) / 3, rel=1e-4)
    # d/dm of (|o_1 - t_j| + |o_2 - t_3|) / 3: the tie at o_1 goes to slot 0 (P_0 = m_0),
    # pulling m_0 by -1/3; o_2 < t_3 pushes m_0..m_3 by +1/3; the exact hit adds nothing.
    # Slot 1 or 2 winning the tie would also move m_1 or m_2.
    expected = torch.tensor([[0.0, 1 / 3, 1 / 3, 1 / 3, 0.0]], device=DEVICE)
    assert torch.allclose(grad, expected, rtol=0, atol=1e-6)
    assert relative_error(grad, run(case, "reference")[1]) < 1e-6


@pytest.mark.parametrize("below, above", [(3, 20), (20, 3), (3, 9), (9, 3)],
                         ids=["tiles 0-1", "tiles 1-0", "one tile", "one tile reversed"])
def test_theoretical_ties_go_to_the_lowest_peak_index_across_peak_tiles(below, above):
    """Peaks at t - d and t + d around the only ion t, in tiles of 16 peaks: the lower peak index wins,
    as torch.argmin, within a tile and across tiles (where a non-strict comparison would let the later
    tile's peak win and flip the gradient's sign)."""
    residue = torch.tensor([[100.0, 150.0]], device=DEVICE)
    mask = torch.ones_like(residue, dtype=torch.bool)
    ion = reference.fragment_mz(residue, mask, ("b",), (1,))[0][0, 0]
    mz = ion + 50 + torch.arange(32, device=DEVICE, dtype=torch.float32)  # far from the ion
    mz[below], mz[above] = ion - 0.25, ion + 0.25  # exact in float32: the same distance
    assert (ion - mz[below]) == (mz[above] - ion)
    case = Case(None, None, residue, mask, mz[None], torch.ones_like(mz)[None], torch.ones_like(mz, dtype=torch.bool)[None],
                dict(ion_types=("b",), charges=(1,), direction="theoretical", distance="da", distance_scale=None,
                     intensity_power=1.0, reduction="sum"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(spectrum_kernels, "BLOCK_N", 16)
        loss, grad = run(case, "triton")
    # b1 = m_0 + proton: d|t - o| / d m_0 is +1 for the peak below, -1 for the one above.
    expected = torch.tensor([[1.0 if below < above else -1.0, 0.0]], device=DEVICE)
    assert loss.item() == 0.25 and torch.equal(grad, expected)
    assert torch.equal(run(case, "reference")[1], expected)


def test_non_contiguous_inputs():
    b = make_batch(4, 9, 70, seed=5, device=DEVICE)
    wide = lambda t: torch.stack([t, t], dim=-1).select(-1, 0)  # noqa: E731  stride 2 on the last axis
    case = _small_case(dict(direction="both", distance="ppm", distance_scale=TAUS["ppm"][0], reduction="none"),
                       logits=b.logits.transpose(1, 2).contiguous().transpose(1, 2), masses=wide(b.masses),
                       mask=wide(b.mask), mz=wide(b.mz), intensity=wide(b.intensity), peak_mask=wide(b.peak_mask))
    assert not case.logits.is_contiguous() and not case.mz.is_contiguous() and not case.mask.is_contiguous()
    contiguous = replace(case, **{name: getattr(case, name).contiguous() for name in
                                  ("logits", "masses", "mask", "mz", "intensity", "peak_mask")})
    got = run(case, "triton", upstream_for(case))
    # Not bitwise: contiguous strides compile to other (vectorised) code, whose sums may round differently.
    check_agreement(case, got, run(contiguous, "triton", upstream_for(case)), 1e-6, rounding=True)
    check_agreement(case, got, run(case, "reference", upstream_for(case)), FP32_TOLERANCE, rounding=True)


def test_bitwise_deterministic_and_forward_only_equal():
    b = make_batch(8, 12, 200, seed=7, device=DEVICE)
    case = _small_case(dict(ion_types=reference.ION_TYPES, charges=(1, 2, 3), distance_scale=1.0),
                       logits=b.logits, masses=b.masses, mask=b.mask, mz=b.mz, intensity=b.intensity,
                       peak_mask=b.peak_mask)
    first, second = run(case, "triton"), run(case, "triton")
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    with torch.no_grad():  # the kernel without its gradient part gives the same loss
        forward_only = peptide_losses.spectrum_matching_loss(
            case.logits, case.mz, case.intensity, masses=case.masses, mask=case.mask, peak_mask=case.peak_mask,
            backend="triton", **case.options)
    assert torch.equal(forward_only, first[0])


def test_too_many_charges_is_a_clear_error():
    case = _small_case(dict(charges=tuple(range(1, 10))))
    with pytest.raises(ValueError, match="charges"):
        run(case, "triton")


# ------------------------------------------------------------------ realistic sizes (GPU only)
BATCH = 1024


def chunked_reference(case: Case, upstream: torch.Tensor):
    """Per-spectrum reference losses and gradient, a few spectra at a time (the (B, N, M) tensors are huge)."""
    results = [run(_rows(case, part), "reference", upstream[part]) for part in _chunks(case, 2**27)]
    return torch.cat([loss for loss, _ in results]), torch.cat([grad for _, grad in results])


@gpu
@pytest.mark.parametrize(
    "length, n_peaks, direction, distance, tau, power",
    [(32, 512, "observed", "da", None, 1.0), (64, 2048, "both", "ppm", TAUS["ppm"][0], 1.0),
     (128, 4096, "theoretical", "da", 0.5, 1.0), (32, 4096, "both", "da", None, 1.0),
     (32, 512, "both", "da", NEAR_TAU, 2.0)],
)
def test_realistic_sizes_grid_masses_match_the_reference(length, n_peaks, direction, distance, tau, power):
    options = dict(ion_types=reference.ION_TYPES, charges=(1, 2, 3), direction=direction, distance=distance,
                   distance_scale=tau, intensity_power=power, reduction="none")
    case = make_case(Shape(BATCH, length, n_peaks, None, True, spectrum_kernels.BLOCK_N, seed=11), options,
                     path="grid")
    upstream = upstream_for(case)
    check_agreement(case, run(case, "triton", upstream), chunked_reference(case, upstream), FP32_TOLERANCE,
                    rounding=False)


def realistic_near_matches(case: Case, seed: int) -> Case:
    """The case with 60 % of its peaks moved within 1 mDa of the predicted (exact) ions, the ambiguous
    ones masked out; at least a fifth of the real peaks are such near matches."""
    ions, valid = reference.fragment_mz(exact_masses(case), case.mask, case.options["ion_types"],
                                        case.options["charges"])
    gen = torch.Generator().manual_seed(seed)
    moved = error_model.near_peaks(ions, valid, case.mz, 0.6, gen)
    # An a1 ion after a negative N-terminal modification token sits below 0 m/z; a peak moved next to it
    # would be a bad value (a NaN loss, peptide_losses.checks), not a near match.
    case = without_ambiguous_peaks(replace(case, mz=moved, peak_mask=case.peak_mask & (moved > 0)))
    near = torch.cat([nearest_ions(_rows(case, part)).distance for part in _chunks(case, 2**26)])
    assert (case.peak_mask & (near <= error_model.NEAR)).sum() >= case.peak_mask.sum() / 5
    return case


@gpu
@pytest.mark.parametrize(
    "length, n_peaks, vocab, tau, power, dtype, entry",
    [(32, 512, 29, NEAR_TAU, 1.0, torch.float32, "logits"), (64, 2048, 64, NEAR_TAU, 2.0, torch.float32, "logits"),
     (128, 1024, 29, 0.5, 1.0, torch.float32, "logits"), (32, 4096, 29, None, 1.0, torch.bfloat16, "logits"),
     (64, 2048, 29, NEAR_TAU, 1.0, torch.float32, "residue_masses")],
)
def test_realistic_sizes_near_matches_are_within_the_error_model(length, n_peaks, vocab, tau, power, dtype, entry):
    """Logits (or float32 residue masses) against the exact loss, peaks within 1 mDa of the predicted ions."""
    b = make_batch(BATCH, length, n_peaks, vocab_size=vocab, dtype=dtype, seed=11, device=DEVICE)
    case = Case(b.logits, b.masses, None, b.mask, b.mz, b.intensity, b.peak_mask,
                near_match_options(reference.ION_TYPES, (1, 2, 3), power, tau))
    if entry == "residue_masses":
        case = replace(case, logits=None, masses=None, residue_masses=exact_masses(case).float())
    case = realistic_near_matches(case, seed=length)
    upstream = upstream_for(case)
    check_exact(case, run(case, "triton", upstream), upstream)
