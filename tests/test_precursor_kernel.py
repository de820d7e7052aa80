"""The fused precursor mass loss kernel against the reference: values, gradients, edge cases.

Runs on CUDA when there is a GPU, else on CPU tensors under the Triton
interpreter (conftest sets ``TRITON_INTERPRET=1``); realistic sizes only on CUDA.

How close is close. Both implementations round, and the ppm error is a
difference of two nearly equal m/z values, so neither can be closer to the
exact ppm than about ``u * |m/z terms| / m/z * 1e6`` (u: unit roundoff of the
compute dtype; ~0.06 ppm in float32, ~1e-10 ppm in float64). Each spectrum
therefore gets the tolerance ``RTOL * |value| + (that rounding noise) * slope``
where RTOL is 1e-5 for float32 and 1e-10 for float64: for well-conditioned
spectra (ppm far above the noise) this is the plain relative error. Gradients
also carry the rounding of E in p (m - E), about u * E per position, which is
large relative to the gradient at nearly one-hot positions; each spectrum's
gradient tolerance adds it. Where the exact error is within the noise of 0, or
two isotope errors are within the noise of each other, the sign of
d ppm / d mass is decided by rounding: there the kernel's gradient may be the
reference's with either sign or 0, nothing else. Exactly 0 ppm (d|x|/dx = 0, no gradient) is tested on its own with
residue masses whose sums are exact.

bf16/fp16 logits: the reference gets the same low-precision logits, upcast, so
values follow the float32 rule; gradients are rounded to the logits' dtype once
by each implementation, so they may differ by one unit in the last place more:
``torch.finfo(dtype).eps`` relative (2**-7 for bf16, 2**-10 for fp16). fp16
gradients can exceed 65504 (short peptides at charge 1: d loss / d mass is
up to 1e6 / (m/z) per Da) and round to inf in both implementations, as any
fp16 cast does (``GradScaler`` relies on it); the comparison counts inf as
+-65504, so the two may disagree there only within the tolerance. Nothing else
may be NaN or inf.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from helpers import DEVICE, ON_CUDA, examples, gpu
from hypothesis import given, settings
from hypothesis import strategies as st

import peptide_losses
from peptide_losses import checks, reference
from peptide_losses.constants import C13_C12, H2O, PROTON
from benchmarks.support.synthetic import make_batch

FLOAT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
SCALES = (0.5, 100.0, 1e4)
ISOTOPES = ((0,), (0, 1), (1, 0), (0, 1, 2), (2,))
#: Relative tolerance of a well-conditioned spectrum, by compute dtype.
RTOL = {torch.float32: 1e-5, torch.float64: 1e-10}
#: How many units of roundoff (times the m/z terms' size, in ppm) one
#: implementation's ppm may be from the exact one; observed worst about 4.
NOISE_ULPS = 16


# ------------------------------------------------------------------ building cases
def make_case(batch, length, vocab, dtype, *, seed, entry="logits", targets=None, signs=None, charges=None,
              empty_rows=None, mask_density=None, scale=100.0, isotope_errors=(0,), reduction="mean"):
    """Inputs whose precursor m/z sits ``targets[b]`` ppm (sign ``signs[b]``) from the exact prediction.

    ``make_batch`` gives the logits, masses and a ragged mask; ``mask_density``
    replaces the mask by a random one; ``empty_rows`` masks whole spectra.
    ``entry="residue_masses"`` predicts per-position masses (B, L) in ``dtype`` instead.
    """
    data = make_batch(batch, length, 1, vocab_size=vocab, dtype=dtype, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    mask = data.mask
    if mask_density is not None:
        mask = torch.rand(batch, length, generator=gen) < mask_density
    if empty_rows is not None:
        mask = mask & ~torch.tensor(empty_rows)[:, None]
    charge = torch.tensor(charges) if charges is not None else torch.randint(1, 7, (batch,), generator=gen)
    if targets is None:
        targets = (10 ** (6 * torch.rand(batch, generator=gen, dtype=torch.float64))).tolist()
    if signs is None:
        signs = (torch.rand(batch, generator=gen) < 0.5).tolist()
    masses = data.masses
    if entry == "logits":
        x = data.logits
        exact_mass = reference.expected_residue_masses(x.double(), masses)
    else:
        tokens = torch.randint(1, vocab, (batch, length), generator=gen)
        x = (masses[tokens] + torch.randn(batch, length, generator=gen, dtype=torch.float64)).to(dtype)
        exact_mass, masses = x.double(), None
    predicted = reference.precursor_mz(reference.peptide_mass(exact_mass, mask), charge)
    # ppm are relative to the observed m/z: t ppm above the prediction is predicted / (1 - t * 1e-6),
    # infinite at 1e6, so errors over 5e5 ppm always put the observed m/z below.
    above = torch.tensor([s and t <= 5e5 for s, t in zip(signs, targets)])
    shift = torch.tensor(targets, dtype=torch.float64) * 1e-6
    precursor_mz = predicted / torch.where(above, 1 - shift, 1 + shift)
    return SimpleNamespace(
        x=x.to(DEVICE), masses=None if masses is None else masses.to(DEVICE), mask=mask.to(DEVICE),
        precursor_mz=precursor_mz.to(DEVICE), charge=charge.to(DEVICE),
        options=dict(scale=scale, isotope_errors=tuple(isotope_errors), reduction=reduction),
    )


def kernel_loss(case, x, **overrides):
    options = {**case.options, **overrides}
    if case.masses is None:
        return peptide_losses.precursor_mass_loss(None, case.precursor_mz, case.charge, residue_masses=x,
                                                  mask=case.mask, backend="triton", **options)
    return peptide_losses.precursor_mass_loss(x, case.precursor_mz, case.charge, masses=case.masses,
                                              mask=case.mask, backend="triton", **options)


def reference_loss(case, x, **overrides):
    options = {**case.options, **overrides}
    mass = x if case.masses is None else reference.expected_residue_masses(x, case.masses)
    return reference.precursor_mass_loss(mass, case.mask, case.precursor_mz, case.charge, **options)


# ------------------------------------------------------------------ the exact answer
def exact_spectra(case):
    """Float64 facts per spectrum, from the inputs rounded as both implementations round them.

    ``noise``: how far (ppm) one implementation's ppm may be from ``ppm``;
    ``ambiguous``: the sign of d ppm / d mass is within rounding of changing;
    ``unsigned_grad``: d loss_b / d x with that sign taken as +1 (upstream 1);
    ``softmax_noise``: relative error of d mass / d logits, p (m - E), that the
    rounding of E (about u * E per position) alone can cause: large where a
    position is nearly one-hot, so that m - E is small for its likely token.
    """
    compute = reference.compute_dtype(case.x)
    x = case.x.detach().to(compute).double().requires_grad_(True)
    if case.masses is None:
        mass = x
    else:
        mass = reference.expected_residue_masses(x, case.masses.to(compute).double())
    (dmass_dx,) = torch.autograd.grad(torch.where(case.mask, mass, 0).sum(), x)
    mass = mass.detach()
    z = case.charge.double()
    obs = case.precursor_mz.to(compute).double()
    predicted = reference.precursor_mz(reference.peptide_mass(mass, case.mask), case.charge)
    k = torch.tensor(case.options["isotope_errors"], dtype=torch.float64, device=DEVICE)
    ppm_k = (predicted[:, None] - (obs[:, None] - k * C13_C12 / z[:, None])).abs() / obs[:, None] * 1e6
    ordered = ppm_k.sort(-1).values
    ppm = ordered[:, 0]
    gap = ordered[:, 1] - ppm if k.numel() > 1 else torch.full_like(ppm, math.inf)
    u = torch.finfo(compute).eps / 2
    terms = (torch.where(case.mask, mass.abs(), 0).sum(-1) + H2O + z * PROTON) / z
    noise = NOISE_ULPS * u * (terms / obs * 1e6 + ppm)
    counted = case.mask.any(-1)
    scale = case.options["scale"]
    slope = scale / (scale + ppm)
    grad_mass = torch.where(counted, slope * 1e6 / (obs * z), 0)
    batch = x.shape[0]
    if case.masses is None:
        softmax_noise = torch.zeros_like(ppm)
    else:
        p_times_mass = torch.where(case.mask[:, :, None], torch.softmax(x.detach(), -1) * mass[:, :, None], 0)
        softmax_noise = (NOISE_ULPS * u * p_times_mass.reshape(batch, -1).norm(dim=1)
                         / dmass_dx.reshape(batch, -1).norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny))
    return SimpleNamespace(
        ppm=ppm, noise=noise, softmax_noise=softmax_noise, slope=slope, scale=scale, counted=counted,
        compute=compute, ambiguous=counted & ((ppm <= noise) | (gap <= 2 * noise)),
        unsigned_grad=grad_mass.reshape(batch, *(1,) * (x.ndim - 1)) * dmass_dx,
    )


# ------------------------------------------------------------------ comparison
def check_against_reference(case, upstream_seed=0):
    """Kernel vs reference: values, then gradients w.r.t. x, under the module docstring's tolerances."""
    exact = exact_spectra(case)
    rtol = RTOL[exact.compute]
    x_k = case.x.clone().requires_grad_(True)
    x_r = case.x.clone().requires_grad_(True)
    value = kernel_loss(case, x_k)
    expected = reference_loss(case, x_r)
    rows = reference_loss(case, case.x, reduction="none")
    assert value.dtype == expected.dtype == exact.compute
    assert value.shape == expected.shape
    assert torch.isfinite(value).all()

    # Per-spectrum tolerance: relative part + the rounding of the ppm (both sides) times the slope.
    row_tol = rtol * rows.abs() + exact.slope * 2 * exact.noise
    reduction = case.options["reduction"]
    if reduction == "none":
        upstream = torch.randn(value.shape, generator=torch.Generator().manual_seed(upstream_seed),
                               dtype=torch.float64).to(DEVICE, value.dtype)
        per_spectrum = upstream.double()
        assert (value - expected).abs().le(row_tol.to(value.dtype)).all(), (value, expected, row_tol)
        assert torch.equal(value[~exact.counted], torch.zeros_like(value[~exact.counted]))
    else:
        count = exact.counted.sum().clamp_min(1).item() if reduction == "mean" else 1
        upstream = torch.ones_like(value)
        per_spectrum = torch.full_like(rows, 1 / count, dtype=torch.float64)
        tol = rtol * expected.abs() + row_tol.sum() / count
        assert (value - expected).abs() <= tol, (value, expected, tol)
    value.backward(upstream)
    expected.backward(upstream)
    check_gradient(x_k.grad, x_r.grad, exact, per_spectrum, rtol)


def check_gradient(grad, expected, exact, upstream, rtol):
    """Row by row, relative norm error; see the module docstring for ambiguous rows and fp16 inf."""
    assert grad.dtype == expected.dtype and grad.shape == expected.shape
    assert not grad.isnan().any() and not expected.isnan().any()
    finfo = torch.finfo(grad.dtype)
    if grad.dtype != torch.float16:
        assert grad.isfinite().all() and expected.isfinite().all()
    batch = grad.shape[0]
    got, want = grad.reshape(batch, -1), expected.reshape(batch, -1)
    unsigned = upstream.reshape(-1, 1) * exact.unsigned_grad.reshape(batch, -1)
    # The slope scale / (scale + ppm) moves by noise / (scale + ppm) relative, p (m - E) by softmax_noise
    # (both implementations round); low precision: one more ulp.
    tol = (rtol + 2 * exact.noise / (exact.scale + exact.ppm) + 2 * exact.softmax_noise
           + (finfo.eps if finfo.bits <= 16 else 0))
    floor = math.sqrt(got.shape[1]) * finfo.tiny * finfo.eps  # subnormal spacing (fp16)
    for b in range(batch):
        if not exact.counted[b]:
            assert torch.equal(got[b], torch.zeros_like(got[b])), f"spectrum {b} has no position: gradient must be 0"
        elif not exact.ambiguous[b]:
            assert rows_close(got[b], want[b], tol[b], floor), (b, got[b], want[b], tol[b])
        else:
            candidates = [(s * unsigned[b]).to(grad.dtype) for s in (-1, 0, 1)]
            assert any(rows_close(got[b], c, tol[b], floor) for c in candidates), (b, got[b], unsigned[b], tol[b])


def rows_close(got, want, tol, floor):
    """||got - want|| <= tol ||want|| + floor, inf (fp16 overflow) counted as the dtype's largest value."""
    largest = torch.finfo(got.dtype).max
    got, want = (t.double().clamp(-largest, largest) for t in (got, want))
    return bool((got - want).norm() <= tol * want.norm() + floor)


# ------------------------------------------------------------------ tests
ppm_targets = st.one_of(st.just(0.0), st.sampled_from((1e-3, 0.5, 20.0, 1e3, 5e5, 1e6)), st.floats(0.0, 1e6))


@st.composite
def cases(draw):
    batch = draw(st.integers(1, 9))
    length = draw(st.integers(1, 70))
    per_row = lambda s: draw(st.lists(s, min_size=batch, max_size=batch))  # noqa: E731
    return make_case(
        batch, length, draw(st.integers(2, 40)), draw(st.sampled_from(FLOAT_DTYPES)),
        seed=draw(st.integers(0, 2**16)),
        entry=draw(st.sampled_from(("logits", "logits", "residue_masses"))),
        targets=per_row(ppm_targets), signs=per_row(st.booleans()), charges=per_row(st.integers(1, 6)),
        empty_rows=per_row(st.sampled_from((False, False, False, True))),
        mask_density=draw(st.sampled_from((None, 0.0, 0.3, 0.8, 1.0))),
        scale=draw(st.sampled_from(SCALES)), isotope_errors=draw(st.sampled_from(ISOTOPES)),
        reduction=draw(st.sampled_from(reference.REDUCTIONS)),
    )


@settings(max_examples=examples(30))
@given(cases())
def test_values_and_gradients_equal_the_reference(case):
    check_against_reference(case)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64))
@pytest.mark.parametrize("isotope_errors", ((0,), (1, 0), (0, 1)))
def test_exact_zero_ppm_has_zero_gradient(dtype, isotope_errors):
    """At exactly 0 ppm the loss is 0 and, as autograd's d|x|/dx at 0, so is the gradient.

    Residue masses are multiples of 1/8 Da, so every sum is exact in any order,
    and the kernel rounds each remaining operation as the reference does.
    """
    gen = torch.Generator().manual_seed(7)
    batch, length = 12, 20
    masses = (torch.randint(400, 1600, (batch, length), generator=gen) / 8).to(DEVICE, dtype)
    mask = (torch.rand(batch, length, generator=gen) < 0.7).to(DEVICE)
    mask[0] = False
    charge = torch.randint(1, 7, (batch,), generator=gen).to(DEVICE)
    precursor_mz = reference.precursor_mz(reference.peptide_mass(masses, mask), charge)
    options = dict(scale=100.0, isotope_errors=isotope_errors)
    x_k = masses.clone().requires_grad_(True)
    x_r = masses.clone().requires_grad_(True)
    rows = peptide_losses.precursor_mass_loss(None, precursor_mz, charge, residue_masses=x_k, mask=mask,
                                              backend="triton", reduction="none", **options)
    expected = reference.precursor_mass_loss(x_r, mask, precursor_mz, charge, reduction="none", **options)
    assert torch.equal(rows, torch.zeros_like(rows)) and torch.equal(expected, torch.zeros_like(expected))
    rows.sum().backward()
    expected.sum().backward()
    assert torch.equal(x_r.grad, torch.zeros_like(x_r.grad))
    assert torch.equal(x_k.grad, x_r.grad)


def test_isotope_ties_go_to_the_first_listed():
    """Observed m/z halfway between isotope errors 0 and 1, so that both ppm are equal in float64:
    the first listed wins, as in the reference's min, and the two orders pull opposite ways."""
    masses = (torch.arange(1, 10) * 100.125).to(DEVICE, torch.float64)[None, :]
    mask = torch.ones_like(masses, dtype=torch.bool)
    charge = torch.ones(1, dtype=torch.int64, device=DEVICE)
    halfway = reference.precursor_mz(reference.peptide_mass(masses, mask), charge) + C13_C12 / 2
    step = torch.nextafter(halfway, halfway + 1) - halfway
    candidates = halfway + torch.arange(-100, 100, device=DEVICE) * step
    n = candidates.shape[0]
    ppm = [reference.precursor_ppm(masses.expand(n, -1), mask.expand(n, -1), candidates, charge.expand(n),
                                   isotope_errors=(k,)) for k in (0, 1)]
    tied = candidates[ppm[0] == ppm[1]]
    assert tied.numel(), "no observed m/z with tied ppm near the halfway point"
    precursor_mz = tied[:1]
    grads = []
    for isotope_errors in ((0, 1), (1, 0)):
        x_k = masses.clone().requires_grad_(True)
        x_r = masses.clone().requires_grad_(True)
        options = dict(scale=100.0, isotope_errors=isotope_errors, reduction="sum")
        value = peptide_losses.precursor_mass_loss(None, precursor_mz, charge, residue_masses=x_k, mask=mask,
                                                   backend="triton", **options)
        expected = reference.precursor_mass_loss(x_r, mask, precursor_mz, charge, **options)
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
        value.backward()
        expected.backward()
        torch.testing.assert_close(x_k.grad, x_r.grad, rtol=1e-12, atol=0)
        grads.append(x_k.grad)
    assert (grads[0] < 0).all() and torch.equal(grads[0], -grads[1])


def test_non_contiguous_inputs():
    """Strided views of every input (transposed, sliced, every other element) give the reference's results,
    as the contiguous inputs do. Not bitwise the same: contiguous logits are read in aligned windows
    (vector loads, several tokens per thread), whose sums over V round in another order."""
    case = make_case(6, 17, 23, torch.float32, seed=3, isotope_errors=(0, 1), reduction="none", mask_density=0.6)
    batch, length, vocab = case.x.shape
    x = torch.zeros(length, batch, vocab + 5, device=DEVICE).transpose(0, 1)[:, :, 2:vocab + 2]
    x.copy_(case.x)
    mask = torch.zeros(length, batch, dtype=torch.bool, device=DEVICE).t()
    mask.copy_(case.mask)
    precursor_mz = torch.zeros(2 * batch, dtype=torch.float64, device=DEVICE)[::2]
    precursor_mz.copy_(case.precursor_mz)
    charge = torch.zeros(batch, 3, dtype=torch.int64, device=DEVICE)[:, 1]
    charge.copy_(case.charge)
    masses = torch.zeros(2 * vocab, dtype=torch.float64, device=DEVICE)[1::2]
    masses.copy_(case.masses)
    strided = SimpleNamespace(x=x, masses=masses, mask=mask, precursor_mz=precursor_mz, charge=charge,
                              options=case.options)
    assert not any(t.is_contiguous() for t in (x, mask, precursor_mz, charge, masses))
    check_against_reference(strided)
    check_against_reference(case)


@pytest.mark.parametrize("entry", ("logits", "residue_masses"))
def test_backward_keeps_only_per_spectrum_scalars(entry):
    """Besides the inputs themselves, autograd saves only per-spectrum numbers: the forward's rows
    (loss, dloss/dM, counted: 3B) and the reduction's two, kept whole rather than as views of it."""
    case = make_case(5, 9, 12, torch.bfloat16, seed=4, entry=entry)
    x = case.x.clone().requires_grad_(True)
    inputs = {t.data_ptr() for t in (x, case.masses, case.mask) if t is not None}
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        loss = kernel_loss(case, x)
    extra = [t for t in saved if t.data_ptr() not in inputs]
    assert saved and all(t.numel() <= 3 * x.shape[0] + 2 for t in extra), [tuple(t.shape) for t in extra]
    loss.backward()  # from what was saved: the reference's gradient
    x_r = case.x.clone().requires_grad_(True)
    reference_loss(case, x_r).backward()
    exact = exact_spectra(case)
    count = exact.counted.sum().clamp_min(1).item()
    check_gradient(x.grad, x_r.grad, exact, torch.full_like(exact.ppm, 1 / count), RTOL[exact.compute])


@pytest.mark.parametrize("entry", ("logits", "residue_masses"))
@pytest.mark.parametrize("reduction", ("mean", "none"))
def test_gradcheck_through_the_kernel(entry, reduction):
    """Finite differences of the float64 kernel against its analytic gradient (fast mode: one random
    projection of the Jacobian), masks with holes and an empty spectrum. Errors of 5-200 ppm keep steps
    of 1e-6 away from |x|'s kink and from ties between isotope errors 0 and 1 (~350 ppm)."""
    case = make_case(6, 13, 11, torch.float64, seed=9, entry=entry, targets=[5.0, 20.0, 50.0, 100.0, 150.0, 200.0],
                     empty_rows=[False, False, True, False, False, False], mask_density=0.7,
                     isotope_errors=(0, 1), reduction=reduction)
    assert not case.mask.all() and case.mask.any(-1).sum() == 5
    leaf = case.x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: kernel_loss(case, x), (leaf,), eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=True)


def test_triton_backend_on_cpu_without_interpreter_is_an_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        checks.resolve_backend("triton", torch.device("cpu"))
    case = make_case(2, 3, 4, torch.float32, seed=0)
    with pytest.raises(ValueError, match="backend='triton'"):
        peptide_losses.precursor_mass_loss(case.x.cpu(), case.precursor_mz.cpu(), case.charge.cpu(),
                                           masses=case.masses.cpu(), backend="triton")
    assert checks.resolve_backend("auto", torch.device("cpu")) == "reference"


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_deterministic(dtype):
    """Two runs give bitwise equal values and gradients."""
    size = (4096, 32, 28) if ON_CUDA else (7, 11, 9)
    case = make_case(*size, dtype, seed=5, isotope_errors=(0, 1), reduction="none")

    def run():
        x = case.x.clone().requires_grad_(True)
        rows = kernel_loss(case, x)
        rows.backward(torch.linspace(-1, 1, rows.shape[0], device=DEVICE))
        return rows.detach(), x.grad

    first, second = run(), run()
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def poisoned_empty(monkeypatch):
    """Every ``torch.empty`` from here on is filled with NaN (floats) or -7 (integers): an element a kernel
    leaves unwritten then shows, whatever memory the allocator hands back."""
    plain = torch.empty

    def empty(*args, **kwargs):
        out = plain(*args, **kwargs)
        return out.fill_(float("nan") if out.is_floating_point() else -7)

    monkeypatch.setattr(torch, "empty", empty)


@pytest.mark.parametrize("reduction", ("mean", "none"))
def test_every_output_element_is_written(monkeypatch, reduction):
    case = make_case(7, 11, 9, torch.float32, seed=6, isotope_errors=(0, 1), reduction=reduction)
    poisoned_empty(monkeypatch)
    check_against_reference(case)


@gpu
@pytest.mark.parametrize("length,vocab", ((32, 28), (32, 29), (128, 28), (32, 64), (128, 64)))
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
@pytest.mark.parametrize("reduction", ("mean", "none"))
def test_realistic_sizes(length, vocab, dtype, reduction):
    case = make_case(4096, length, vocab, dtype, seed=length + vocab, isotope_errors=(0, 1), reduction=reduction)
    check_against_reference(case)
