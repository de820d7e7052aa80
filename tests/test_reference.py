"""The reference maths: pyteomics agreement, gradients, seed facts, edge cases, invariances."""

import itertools
import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyteomics import mass

import peptide_losses
from helpers.vocabulary import DEFAULT, peptides, pyteomics_token_masses
from peptide_losses import reference
from peptide_losses.constants import C13_C12, H2O, PROTON
from benchmarks.support.synthetic import make_batch

ALL_IONS = ("a", "b", "c", "x", "y", "z")
AA_MASS = pyteomics_token_masses()


def pyteomics_mz(tokens, ion_type, charge):
    with warnings.catch_warnings():  # pyteomics warns that a/c/x/z conventions vary
        warnings.simplefilter("ignore")
        return mass.fast_mass(tokens, ion_type=ion_type, charge=charge, aa_mass=AA_MASS)


def folded_masses(tokens, padding=0):
    """(1, n + padding) float64 residue masses of a token list (N-terminal mod folded in) and the mask."""
    masses = DEFAULT.residue_masses([DEFAULT.index(t) for t in tokens])
    values = torch.tensor([masses + [123.0] * padding], dtype=torch.float64)
    mask = torch.arange(values.shape[1])[None, :] < len(masses)
    return values, mask


def split_n_terminal(tokens):
    """(residue groups, n): the N-terminal mod travels with the first residue, as pyteomics sees it."""
    groups = [[t] for t in tokens]
    if DEFAULT.is_n_terminal(tokens[0]):
        groups = [groups[0] + groups[1], *groups[2:]]
    return groups, len(groups)


# ------------------------------------------------------------------ m/z against pyteomics
@settings(max_examples=40, deadline=None)
@given(peptides(max_size=20), st.integers(0, 3))
def test_fragment_mz_equals_pyteomics(tokens, padding):
    groups, n = split_n_terminal(tokens)
    values, mask = folded_masses(tokens, padding)
    charges = (1, 2, 3)
    mz, valid = reference.fragment_mz(values, mask, ALL_IONS, charges)
    length = values.shape[1]
    assert mz.shape == valid.shape == (1, len(ALL_IONS) * len(charges) * length)
    for t, ion in enumerate(ALL_IONS):
        for c, z in enumerate(charges):
            block = slice((t * len(charges) + c) * length, (t * len(charges) + c + 1) * length)
            assert valid[0, block].tolist() == [l < n - 1 for l in range(length)]
            for k in range(1, n):  # slot k-1: cleavage after k residues
                fragment = groups[:k] if ion in "abc" else groups[k:]
                expected = pyteomics_mz([t for g in fragment for t in g], ion, z)
                assert abs(mz[0, block][k - 1].item() - expected) < 1e-6, (ion, z, k)


@settings(max_examples=40, deadline=None)
@given(peptides(min_size=1, max_size=25), st.integers(1, 4))
def test_precursor_mz_equals_pyteomics(tokens, z):
    values, mask = folded_masses(tokens, padding=2)
    charge = torch.tensor([z])
    predicted = reference.precursor_mz(reference.peptide_mass(values, mask), charge)
    assert abs(predicted.item() - pyteomics_mz(tokens, "M", z)) < 1e-6


def test_unfolded_n_terminal_token_is_one_more_position():
    tokens = DEFAULT.tokenize("[Acetyl]-PEPTIDEK")
    folded, fmask = folded_masses(tokens)
    unfolded = torch.tensor([[DEFAULT.masses[DEFAULT.index(t)] for t in tokens]], dtype=torch.float64)
    mz_f, valid_f = reference.fragment_mz(folded, fmask, ("b", "y"), (1,))
    mz_u, valid_u = reference.fragment_mz(unfolded, torch.ones_like(unfolded, dtype=torch.bool), ("b", "y"), (1,))
    b_u, y_u = mz_u[valid_u].reshape(2, 8)
    b_f, y_f = mz_f[valid_f].reshape(2, 7)
    # One more cleavage, after the modification; the others are pyteomics' ions.
    assert torch.allclose(b_u[1:], b_f) and torch.allclose(y_u[1:], y_f)
    assert b_u[0].item() == pytest.approx(DEFAULT.masses[DEFAULT.index("[Acetyl]-")] + PROTON)


def test_masked_positions_anywhere_are_left_out():
    values = torch.tensor([[100.0, 7.0, 120.0, 9.0, 9.0, 130.0]], dtype=torch.float64)
    holes = torch.tensor([[True, False, True, False, False, True]])
    mz, valid = reference.fragment_mz(values, holes, ("b", "y"), (1, 2))
    compact, cmask = torch.tensor([[100.0, 120.0, 130.0]], dtype=torch.float64), torch.ones(1, 3, dtype=torch.bool)
    mz_c, valid_c = reference.fragment_mz(compact, cmask, ("b", "y"), (1, 2))
    assert torch.equal(mz[valid], mz_c[valid_c])


def test_expected_residue_masses():
    logits = torch.randn(2, 3, len(DEFAULT), dtype=torch.float64)
    masses = DEFAULT.mass_tensor()
    expected = (torch.softmax(logits, -1) * masses).sum(-1)
    assert torch.allclose(reference.expected_residue_masses(logits, masses), expected)
    probs = torch.softmax(logits, -1)
    assert torch.allclose(reference.expected_residue_masses(probs, masses, normalized=True), expected)
    assert reference.expected_residue_masses(logits.bfloat16(), masses).dtype == torch.float32


# ------------------------------------------------------------------ gradients
def grad_batch(seed):
    """A small float64 batch whose losses are differentiable at the drawn point (no ties, no d = 0)."""
    b = make_batch(3, 5, 8, dtype=torch.float64, seed=seed, ragged=False)
    b.mz, b.intensity = b.mz.double(), b.intensity.double() + 0.1
    b.peak_mask[2, 5:] = False
    b.mask[1, 4:] = False
    return b


def _spectrum_options():
    grid = list(itertools.product(reference.DIRECTIONS, reference.DISTANCES, (False, True)))
    for i, (direction, distance, scaled) in enumerate(grid):
        tau = (0.05 if distance == "da" else 50.0) if scaled else None
        yield dict(direction=direction, distance=distance, distance_scale=tau,
                   intensity_power=(1.0, 0.5, 2.0)[i % 3], reduction=reference.REDUCTIONS[i % 3])
    yield dict(ion_types=ALL_IONS, charges=(1, 2, 3), direction="both", distance_scale=0.02)


def gradcheck_through(through, b, loss, data, **tolerance):
    """gradcheck of ``loss(logits_or_None, *data, **inputs)`` w.r.t. logits or the residue masses.

    Through the logits the check projects the Jacobian on random directions
    (``fast_mode``): the full one would take 2 * B * L * V evaluations per check.
    """
    if through == "logits":
        x = b.logits.clone().requires_grad_()
        return torch.autograd.gradcheck(lambda x: loss(x, *data, masses=b.masses), (x,), fast_mode=True, **tolerance)
    x = reference.expected_residue_masses(b.logits, b.masses).detach().requires_grad_()
    return torch.autograd.gradcheck(lambda x: loss(None, *data, residue_masses=x), (x,), **tolerance)


@pytest.mark.parametrize("through", ["logits", "residue_masses"])
@pytest.mark.parametrize("options", list(_spectrum_options()), ids=str)
def test_gradcheck_spectrum_matching_loss(options, through):
    b = grad_batch(seed=1)

    def loss(*args, **inputs):
        return peptide_losses.spectrum_matching_loss(*args, mask=b.mask, peak_mask=b.peak_mask, backend="reference",
                                                     **inputs, **options)

    # Random peptides sit ~1e5 ppm from the peaks: at that size float64 rounding of
    # the loss alone puts ~1e-4 of noise into a finite difference with eps = 1e-6.
    tolerance = dict(eps=1e-5, atol=1e-4) if options.get("distance") == "ppm" else {}
    assert gradcheck_through(through, b, loss, (b.mz, b.intensity), **tolerance)


@pytest.mark.parametrize("through", ["logits", "residue_masses"])
@pytest.mark.parametrize(
    "scale, isotope_errors, reduction",
    [(s, k, r) for (k, r), s in zip(itertools.product([(0,), (0, 1), (0, 1, 2)], reference.REDUCTIONS),
                                    itertools.cycle([100.0, 5.0]))],
)
def test_gradcheck_precursor_mass_loss(scale, isotope_errors, reduction, through):
    b = grad_batch(seed=2)

    def loss(*args, **inputs):
        return peptide_losses.precursor_mass_loss(*args, mask=b.mask, scale=scale, isotope_errors=isotope_errors,
                                                  reduction=reduction, backend="reference", **inputs)

    assert gradcheck_through(through, b, loss, (b.precursor_mz, b.charge))


# ------------------------------------------------------------------ seed facts
def test_log_scaled_precursor_loss_keeps_a_gradient_at_25000_ppm():
    residue = torch.tensor([[500.0, 600.0]], dtype=torch.float64, requires_grad=True)
    mask = torch.ones(1, 2, dtype=torch.bool)
    charge = torch.tensor([2])
    predicted = (1100.0 + H2O + 2 * PROTON) / 2
    observed = predicted / 1.025  # predicted is 25,000 ppm above the observed m/z
    loss = reference.precursor_mass_loss(residue, mask, torch.tensor([observed], dtype=torch.float64), charge)
    assert loss.item() == pytest.approx(100 * math.log1p(25_000 / 100), rel=1e-9)
    assert loss.item() == pytest.approx(552.5, abs=0.05)
    (grad,) = torch.autograd.grad(loss, residue)
    # d loss / d ppm = scale / (scale + ppm); d ppm / d mass = 1e6 / (observed * z)
    expected = 100 / (100 + 25_000) * 1e6 / (observed * 2)
    assert grad[0, 0].item() == pytest.approx(expected, rel=1e-6) and expected > 0
    # The alternative this replaces: a clamp at 100 ppm has no gradient there.
    ppm = reference.precursor_ppm(residue, mask, torch.tensor([observed], dtype=torch.float64), charge)
    (clamped,) = torch.autograd.grad(ppm.clamp(max=100.0).sum(), residue)
    assert ppm.item() == pytest.approx(25_000, rel=1e-9) and torch.all(clamped == 0)


def test_isotope_errors_take_the_smallest_ppm():
    residue = torch.tensor([[500.0, 600.0]], dtype=torch.float64)
    mask = torch.ones(1, 2, dtype=torch.bool)
    z = 3
    predicted = (1100.0 + H2O + z * PROTON) / z
    observed = torch.tensor([predicted + C13_C12 / z + 1e-4], dtype=torch.float64)  # picked the 13C peak
    charge = torch.tensor([z])
    plain = reference.precursor_ppm(residue, mask, observed, charge).item()
    allowed = reference.precursor_ppm(residue, mask, observed, charge, isotope_errors=(0, 1, 2)).item()
    assert plain == pytest.approx((C13_C12 / z + 1e-4) / observed.item() * 1e6, rel=1e-9)
    assert allowed == pytest.approx(1e-4 / observed.item() * 1e6, rel=1e-6)


# ------------------------------------------------------------------ empty rows, ties, |x| at 0
@pytest.mark.parametrize("direction", reference.DIRECTIONS)
def test_empty_rows_give_zero_and_are_left_out_of_the_mean(direction):
    b = make_batch(4, 6, 10, dtype=torch.float64, seed=3, ragged=False)
    b.peak_mask[1] = False  # no peak
    b.mask[2, 1:] = False  # one residue: no fragment
    b.intensity[3] = 0.0  # zero total weight
    x = reference.expected_residue_masses(b.logits, b.masses).detach().requires_grad_()
    args = (x, b.mask, b.mz, b.intensity, b.peak_mask)
    per_row = reference.spectrum_matching_loss(*args, direction=direction, reduction="none")
    assert per_row[0] > 0 and torch.all(per_row[1:] == 0)
    mean = reference.spectrum_matching_loss(*args, direction=direction)
    assert mean.item() == per_row[0].item()
    (grad,) = torch.autograd.grad(mean, x)
    assert torch.isfinite(grad).all() and torch.all(grad[1:] == 0) and grad[0].abs().sum() > 0


@pytest.mark.parametrize("reduction", reference.REDUCTIONS)
def test_all_empty_batch_is_zero_with_zero_gradient(reduction):
    b = make_batch(3, 4, 5, dtype=torch.float64, seed=4, ragged=False)
    x = reference.expected_residue_masses(b.logits, b.masses).detach().requires_grad_()
    no_mask = torch.zeros_like(b.mask)
    for direction in reference.DIRECTIONS:
        for masks in ((b.mask, torch.zeros_like(b.peak_mask)), (no_mask, b.peak_mask)):
            loss = reference.spectrum_matching_loss(x, masks[0], b.mz, b.intensity, masks[1],
                                                    direction=direction, reduction=reduction)
            (grad,) = torch.autograd.grad(loss.sum(), x)
            assert torch.all(loss == 0) and torch.all(grad == 0)
    loss = reference.precursor_mass_loss(x, no_mask, b.precursor_mz, b.charge, reduction=reduction)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    assert torch.all(loss == 0) and torch.all(grad == 0)


@pytest.mark.parametrize("direction", reference.DIRECTIONS)
@pytest.mark.parametrize("batch, length, n_peaks", [(0, 4, 5), (2, 0, 5), (2, 4, 0), (2, 0, 0)])
def test_zero_sized_axes_give_zero_with_zero_gradient(direction, batch, length, n_peaks):
    x = torch.full((batch, length), 100.0, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mz = torch.full((batch, n_peaks), 300.0, dtype=torch.float64)
    for reduction in reference.REDUCTIONS:
        loss = reference.spectrum_matching_loss(x, mask, mz, torch.ones_like(mz), mz > 0, direction=direction,
                                                reduction=reduction)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        assert torch.all(loss == 0) and torch.all(grad == 0)
        assert loss.shape == ((batch,) if reduction == "none" else ())


def test_padded_peaks_holding_nan_do_not_reach_the_gradient():
    b = make_batch(2, 5, 6, dtype=torch.float64, seed=5, ragged=False)
    b.peak_mask[:, 4:] = False
    b.mz[:, 4] = float("nan")
    b.mz[:, 5] = float("inf")
    x = reference.expected_residue_masses(b.logits, b.masses).detach().requires_grad_()
    for direction, distance in itertools.product(reference.DIRECTIONS, reference.DISTANCES):
        loss = reference.spectrum_matching_loss(x, b.mask, b.mz, b.intensity, b.peak_mask,
                                                direction=direction, distance=distance)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (direction, distance)


def _b_ion_case(masses):
    """One peptide, b ions at charge 1 only: (residue masses requiring grad, mask, its b ions)."""
    x = torch.tensor([masses], dtype=torch.float64, requires_grad=True)
    mask = torch.ones_like(x, dtype=torch.bool)
    ions, _ = reference.fragment_mz(x.detach(), mask, ("b",), (1,))
    return x, mask, ions[0]


def test_tie_between_ions_goes_to_the_lowest_ion_index():
    # b1 and b2 = b1 + 1 exactly; a peak at b1 + 0.5 is exactly as far from both.
    x, mask, ions = _b_ion_case([100.0, 1.0, 50.0])
    assert ions[1] - ions[0] == 1.0
    peak = (ions[0] + 0.5).reshape(1, 1)
    one = torch.ones(1, 1, dtype=torch.float64)
    loss = reference.spectrum_matching_loss(x, mask, peak, one, one > 0, ion_types=("b",), charges=(1,),
                                            distance_scale=None)
    (grad,) = torch.autograd.grad(loss, x)
    assert loss.item() == 0.5
    assert grad.tolist() == [[-1.0, 0.0, 0.0]]  # d |o - b1| / d m: b1 was chosen, not b2


def test_tie_between_peaks_goes_to_the_lowest_peak_index():
    x, mask, ions = _b_ion_case([100.0, 50.0])
    for order, sign in ((torch.tensor([-0.5, 0.5]), 1.0), (torch.tensor([0.5, -0.5]), -1.0)):
        peaks = (ions[0] + order.double()).reshape(1, 2)
        ones = torch.ones(1, 2, dtype=torch.float64)
        loss = reference.spectrum_matching_loss(x, mask, peaks, ones, ones > 0, ion_types=("b",),
                                                charges=(1,), direction="theoretical", distance_scale=None)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.item() == 0.5 and grad.tolist() == [[sign, 0.0]]


def test_gradient_of_a_zero_distance_is_zero():
    x, mask, ions = _b_ion_case([100.0, 50.0])
    peak = ions[:1].reshape(1, 1)
    one = torch.ones(1, 1, dtype=torch.float64)
    for distance_scale in (None, 0.02):
        loss = reference.spectrum_matching_loss(x, mask, peak, one, one > 0, ion_types=("b",), charges=(1,),
                                                distance_scale=distance_scale)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.item() == 0 and torch.all(grad == 0)


# ------------------------------------------------------------------ invariances
INVARIANCE_OPTIONS = [dict(direction=d, distance=m, distance_scale=s)
                      for d, m, s in itertools.product(reference.DIRECTIONS, ("da",), (None, 0.02))]
INVARIANCE_OPTIONS += [dict(direction="both", distance="ppm", distance_scale=20.0)]


def _loss_and_grad(x, mask, mz, intensity, peak_mask, **options):
    x = x.detach().requires_grad_()
    loss = reference.spectrum_matching_loss(x, mask, mz, intensity, peak_mask, reduction="none", **options)
    (grad,) = torch.autograd.grad(loss.sum(), x)
    return loss, grad


@pytest.mark.parametrize("options", INVARIANCE_OPTIONS, ids=str)
def test_permuting_observed_peaks_changes_nothing(options):
    b = make_batch(4, 8, 12, dtype=torch.float64, seed=6)
    x = reference.expected_residue_masses(b.logits, b.masses)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    loss, grad = _loss_and_grad(x, b.mask, b.mz, b.intensity, b.peak_mask, **options)
    loss_p, grad_p = _loss_and_grad(x, b.mask, b.mz[:, perm], b.intensity[:, perm], b.peak_mask[:, perm], **options)
    assert torch.allclose(loss, loss_p, rtol=1e-12, atol=0) and torch.allclose(grad, grad_p, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("options", INVARIANCE_OPTIONS, ids=str)
def test_padding_peaks_and_positions_changes_nothing(options):
    b = make_batch(4, 8, 12, dtype=torch.float64, seed=7)
    x = reference.expected_residue_masses(b.logits, b.masses)
    loss, grad = _loss_and_grad(x, b.mask, b.mz, b.intensity, b.peak_mask, **options)

    def pad(t, extra, value):
        return torch.cat([t, torch.full((t.shape[0], extra), value, dtype=t.dtype)], dim=1)

    x_p, mask_p = pad(x, 3, 1e4), pad(b.mask, 3, False)
    mz_p, int_p, pm_p = pad(b.mz, 5, float("nan")), pad(b.intensity, 5, 7.0), pad(b.peak_mask, 5, False)
    loss_p, grad_p = _loss_and_grad(x_p, mask_p, mz_p, int_p, pm_p, **options)
    # Equal up to summation order (vectorised sums over longer rows round differently).
    assert torch.allclose(loss, loss_p, rtol=1e-12, atol=0)
    assert torch.allclose(grad, grad_p[:, :8], rtol=1e-10, atol=1e-14) and torch.all(grad_p[:, 8:] == 0)


@pytest.mark.parametrize("options", INVARIANCE_OPTIONS, ids=str)
def test_splitting_a_batch_changes_nothing(options):
    b = make_batch(6, 8, 12, dtype=torch.float64, seed=8)
    x = reference.expected_residue_masses(b.logits, b.masses)
    args = (x, b.mask, b.mz, b.intensity, b.peak_mask)
    whole = reference.spectrum_matching_loss(*args, reduction="none", **options)
    parts = [reference.spectrum_matching_loss(*(a[rows] for a in args), reduction="none", **options)
             for rows in (slice(0, 2), slice(2, 6))]
    assert torch.equal(whole, torch.cat(parts))
    total = reference.spectrum_matching_loss(*args, reduction="sum", **options)
    assert total.item() == pytest.approx(sum(p.sum().item() for p in parts), rel=1e-12)
    precursor = reference.precursor_mass_loss(x, b.mask, b.precursor_mz, b.charge, reduction="none")
    split = [reference.precursor_mass_loss(x[r], b.mask[r], b.precursor_mz[r], b.charge[r], reduction="none")
             for r in (slice(0, 3), slice(3, 6))]
    assert torch.equal(precursor, torch.cat(split))
