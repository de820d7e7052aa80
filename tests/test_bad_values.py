"""Bad values (peptide_losses.checks) never give a finite loss: NaN on both backends, the same spectra.

For every kind of bad value put into one spectrum of a batch, the reference and
the Triton kernels (the interpreter on the CPU) both give that spectrum, and
only that one, a NaN loss; NaN for the mean and the sum; a NaN gradient at its
unmasked positions and a finite one everywhere else; and ``check_values=True``
raises a ValueError naming the argument instead. Values where the losses do not
read (masked positions, padded peaks) and a single -inf logit (a zero
probability) are not bad.
"""

from __future__ import annotations

import re

import pytest
import torch

import peptide_losses as pl
from helpers import DEVICE, set_at
from benchmarks.support.synthetic import make_batch

BACKENDS = ("reference", "triton")
BAD = 1  # the spectrum that gets the bad value
NAN, INF = float("nan"), float("inf")


def _batch():
    """Four spectra with every position and peak real, except spectrum 2's padding (positions 4-5, peaks 7-9)."""
    data = make_batch(4, 6, 10, device=DEVICE, seed=11, ragged=False)
    data.mask[2, 4:] = False
    data.peak_mask[2, 7:] = False
    return data


def _residue_masses(fields):
    fields["residue_masses"] = pl.reference.expected_residue_masses(fields.pop("logits"), fields.pop("masses"))
    fields["residue_masses"][BAD, 3] = INF


#: (name, edit, the argument check_values=True names, which spectra get NaN: None for only BAD).
SHARED = [
    ("logits NaN", set_at("logits", (BAD, 2, 5), NAN), "logits", None),
    ("logits +inf", set_at("logits", (BAD, 0, 1), INF), "logits", None),
    ("a row of -inf logits", set_at("logits", (BAD, 5), -INF), "logits", None),
    ("a NaN token mass", set_at("masses", 3, NAN), "masses", "every"),
    ("an inf residue mass", _residue_masses, "residue_masses", None),
]
SPECTRUM = SHARED + [
    ("mz NaN", set_at("mz", (BAD, 4), NAN), "mz", None),
    ("mz inf", set_at("mz", (BAD, 0), INF), "mz", None),
    ("mz zero", set_at("mz", (BAD, 9), 0.0), "mz", None),
    ("mz negative", set_at("mz", (BAD, 2), -300.0), "mz", None),
    ("all-zero mz", set_at("mz", BAD, 0.0), "mz", None),
    ("intensity NaN", set_at("intensity", (BAD, 1), NAN), "intensity", None),
    ("intensity inf", set_at("intensity", (BAD, 1), INF), "intensity", None),
    ("intensity negative", set_at("intensity", (BAD, 6), -0.5), "intensity", None),
]
PRECURSOR = SHARED + [
    ("precursor_mz NaN", set_at("precursor_mz", BAD, NAN), "precursor_mz", None),
    ("precursor_mz inf", set_at("precursor_mz", BAD, INF), "precursor_mz", None),
    ("precursor_mz zero", set_at("precursor_mz", BAD, 0.0), "precursor_mz", None),
    ("precursor_mz negative", set_at("precursor_mz", BAD, -500.0), "precursor_mz", None),
    ("charge zero", set_at("charge", BAD, 0), "charge", None),
    ("charge negative", set_at("charge", BAD, -2), "charge", None),
]
#: Not bad: where the losses do not read, and a zero probability.
HARMLESS = [
    ("NaN logits at a masked position", set_at("logits", (2, 5, 0), NAN)),
    ("NaN m/z and negative intensity at padded peaks", lambda f: (set_at("mz", (2, 8), NAN)(f),
                                                                  set_at("intensity", (2, 9), -1.0)(f))),
    ("one -inf logit", set_at("logits", (BAD, 2, 7), -INF)),
]


def _fields(edit):
    data = _batch()
    fields = dict(logits=data.logits, masses=data.masses, mask=data.mask, mz=data.mz, intensity=data.intensity,
                  peak_mask=data.peak_mask, precursor_mz=data.precursor_mz, charge=data.charge)
    edit(fields)
    return fields


def _loss(loss, fields, backend, reduction, **extra):
    """(loss, gradient of its sum w.r.t. logits or residue masses); the gradient of a per-spectrum
    loss is taken with weight 1 per spectrum, so that a NaN spectrum does not spread to the others."""
    fields = dict(fields)
    x = fields.pop("residue_masses", None)
    x = (fields["logits"] if x is None else x).detach().requires_grad_()
    prediction = dict(residue_masses=x, logits=None) if "logits" not in fields else dict(logits=x)
    fields.pop("logits", None)
    masses = fields.pop("masses", None)
    if loss == "spectrum":
        value = pl.spectrum_matching_loss(prediction.pop("logits", None), fields["mz"], fields["intensity"],
                                          masses=masses, mask=fields["mask"], peak_mask=fields["peak_mask"],
                                          backend=backend, reduction=reduction, direction="both", **prediction,
                                          **extra)
    else:
        value = pl.precursor_mass_loss(prediction.pop("logits", None), fields["precursor_mz"], fields["charge"],
                                       masses=masses, mask=fields["mask"], backend=backend, reduction=reduction,
                                       isotope_errors=(0, 1), **prediction, **extra)
    (grad,) = torch.autograd.grad(value, x, torch.ones_like(value))
    return value.detach(), grad


def _nan_spectra(which, fields):
    bad = torch.zeros(4, dtype=torch.bool, device=DEVICE)
    if which == "every":
        bad |= fields["mask"].any(-1)
    else:
        bad[BAD] = True
    return bad


def _check(loss, name, edit, argument, which):
    fields = _fields(edit)
    expected = _nan_spectra(which, fields)
    for backend in BACKENDS:
        per_spectrum, grad = _loss(loss, fields, backend, "none")
        assert torch.equal(torch.isnan(per_spectrum), expected), (name, backend, per_spectrum)
        # NaN at every logit (or the residue mass) of a bad spectrum's unmasked positions, finite at the
        # good spectra. (A bad spectrum's masked positions: 0 from the kernels; the reference's autograd
        # gives NaN there when a token mass is NaN.)
        nan = torch.isnan(grad) if grad.ndim == 2 else torch.isnan(grad).all(-1)
        assert grad.ndim == 2 or torch.equal(nan, torch.isnan(grad).any(-1)), (name, backend)
        unmasked = fields["mask"]
        assert torch.equal(nan[unmasked], expected[:, None].expand_as(unmasked)[unmasked]), (name, backend)
        assert torch.isfinite(grad[~expected]).all(), (name, backend)
        for reduction in ("mean", "sum"):
            assert torch.isnan(_loss(loss, fields, backend, reduction)[0]), (name, backend, reduction)
        with pytest.raises(ValueError, match=rf"\b{re.escape(argument)}\b"):
            _loss(loss, fields, backend, "mean", check_values=True)


@pytest.mark.parametrize("name, edit, argument, which", SPECTRUM, ids=[c[0] for c in SPECTRUM])
def test_spectrum_loss_is_nan_where_a_value_is_bad(name, edit, argument, which):
    _check("spectrum", name, edit, argument, which)


@pytest.mark.parametrize("name, edit, argument, which", PRECURSOR, ids=[c[0] for c in PRECURSOR])
def test_precursor_loss_is_nan_where_a_value_is_bad(name, edit, argument, which):
    _check("precursor", name, edit, argument, which)


@pytest.mark.parametrize("loss", ["spectrum", "precursor"])
@pytest.mark.parametrize("name, edit", HARMLESS, ids=[c[0] for c in HARMLESS])
def test_values_the_losses_do_not_use_leave_them_finite(loss, name, edit):
    fields = _fields(edit)
    losses = {}
    for backend in BACKENDS:
        value, grad = _loss(loss, fields, backend, "none")
        assert torch.isfinite(value).all(), (name, backend)
        if name != "NaN logits at a masked position":  # the reference's softmax backward gives NaN there
            assert torch.isfinite(grad).all(), (name, backend)
        _loss(loss, fields, backend, "mean", check_values=True)  # no error
        losses[backend] = value
    torch.testing.assert_close(losses["triton"], losses["reference"], rtol=1e-4, atol=1e-3)


def test_precursor_ppm_is_nan_where_a_value_is_bad():
    fields = _fields(set_at("charge", BAD, 0))
    ppm = pl.precursor_ppm(fields["logits"], fields["precursor_mz"], fields["charge"], masses=fields["masses"],
                           mask=fields["mask"])
    assert torch.equal(torch.isnan(ppm), _nan_spectra(None, fields))


def _zero_padded():
    """The batch with spectrum 2's padded peaks at m/z 0 and a nonzero intensity, as Casanovo pads them."""
    fields = _fields(lambda f: None)
    fields["mz"][2, 7:] = 0.0
    fields["intensity"][2, 7:] = 5.0
    return fields


def test_without_a_peak_mask_zero_mz_is_padding_on_both_backends_and_in_the_modules():
    fields = _zero_padded()
    expected, _ = _loss("spectrum", fields, "reference", "none")
    assert torch.isfinite(expected).all()
    unmasked = dict(fields, peak_mask=None)
    for backend in BACKENDS:
        got, grad = _loss("spectrum", unmasked, backend, "none")
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3, msg=backend)
        assert torch.isfinite(grad).all(), backend
        assert torch.equal(got, _loss("spectrum", fields, backend, "none")[0]), backend
        module = pl.SpectrumMatchingLoss(fields["masses"], direction="both", reduction="none", backend=backend)
        got = module(fields["logits"], fields["mz"], fields["intensity"], mask=fields["mask"])
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-3, msg=backend)


@pytest.mark.parametrize("value", [NAN, INF, -INF, -300.0])
def test_without_a_peak_mask_a_nan_inf_or_negative_mz_is_still_bad(value):
    fields = _zero_padded()
    fields["mz"][BAD, 4] = value
    fields["peak_mask"] = None
    for backend in BACKENDS:
        per_spectrum, _ = _loss("spectrum", fields, backend, "none")
        assert torch.equal(torch.isnan(per_spectrum), _nan_spectra(None, fields)), (value, backend, per_spectrum)
        with pytest.raises(ValueError, match=r"\bmz\b"):
            _loss("spectrum", fields, backend, "mean", check_values=True)
