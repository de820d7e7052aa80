"""Public API: every bad input is a ValueError/TypeError naming the argument (bad values: a NaN loss,
or that error with check_values=True); the modules."""

import dataclasses
import inspect
import re

import pytest
import torch

import peptide_losses
from helpers import set_at
from peptide_losses import PrecursorMassLoss, SpectrumMatchingLoss, Vocabulary
from benchmarks.support.synthetic import make_batch

VOCAB = Vocabulary.default()


def spectrum_args():
    """Valid keyword arguments of spectrum_matching_loss (B=2, L=4, N=6)."""
    b = make_batch(2, 4, 6, seed=0, ragged=False)
    return dict(logits=b.logits, mz=b.mz, intensity=b.intensity, masses=b.masses, mask=b.mask,
                peak_mask=b.peak_mask, backend="reference")


def precursor_args():
    """Valid keyword arguments of precursor_mass_loss (B=2, L=4)."""
    b = make_batch(2, 4, 6, seed=0, ragged=False)
    return dict(logits=b.logits, precursor_mz=b.precursor_mz, charge=b.charge, masses=b.masses, mask=b.mask,
                backend="reference")


def _set(name, value):
    """An edit of the argument dict: ``value`` may be a function of the current one."""
    def edit(args):
        args[name] = value(args[name]) if callable(value) else value
    return edit


def _residue_masses_instead(args):
    args["residue_masses"] = peptide_losses.reference.expected_residue_masses(args.pop("logits"), args.pop("masses"))
    args["logits"] = None


def _on_meta(name):
    return _set(name, lambda t: torch.empty(t.shape, dtype=t.dtype, device="meta"))


PREDICTION_CASES = [
    # (id, edit, exception, the argument the message must name)
    ("logits rank 2", _set("logits", lambda t: t[0]), ValueError, "logits"),
    ("logits int", _set("logits", lambda t: t.long()), TypeError, "logits"),
    ("logits not a tensor", _set("logits", lambda t: t.tolist()), TypeError, "logits"),
    ("logits NaN", set_at("logits", (0, 1, 2), float("nan")), ValueError, "logits"),
    ("logits inf", set_at("logits", (1, 0, 0), float("inf")), ValueError, "logits"),
    ("logits vs vocabulary size", _set("logits", lambda t: t[..., :-1]), ValueError, "vocabulary size"),
    ("masses missing", _set("masses", None), ValueError, "masses"),
    ("masses rank 2", _set("masses", lambda t: t[None]), ValueError, "masses"),
    ("masses NaN", set_at("masses", 3, float("nan")), ValueError, "masses"),
    ("masses on another device", _on_meta("masses"), ValueError, "masses"),
    ("logits and residue_masses", _set("residue_masses", torch.zeros(2, 4)), ValueError, "residue_masses"),
    ("neither logits nor residue_masses", _set("logits", None), ValueError, "residue_masses"),
    ("masses with residue_masses", lambda a: (_residue_masses_instead(a), a.update(masses=VOCAB)), ValueError,
     "masses"),
    ("residue_masses rank 3", lambda a: (_residue_masses_instead(a), _set("residue_masses", lambda t: t[None])(a)),
     ValueError, "residue_masses"),
    ("residue_masses NaN", lambda a: (_residue_masses_instead(a), set_at("residue_masses", (0, 0), float("nan"))(a)),
     ValueError, "residue_masses"),
    ("mask shape", _set("mask", lambda t: t[:, :-1]), ValueError, "mask"),
    ("mask float", _set("mask", lambda t: t.float()), TypeError, "mask"),
    ("mask not 0/1", _set("mask", lambda t: t.long() * 2), ValueError, "mask"),
    ("mask not a tensor", _set("mask", lambda t: t.tolist()), TypeError, "mask"),
    ("mask on another device", _on_meta("mask"), ValueError, "mask"),
    ("backend name", _set("backend", "cuda"), ValueError, "backend"),
]

SPECTRUM_CASES = PREDICTION_CASES + [
    ("mz rank 1", _set("mz", lambda t: t[0]), ValueError, "mz"),
    ("mz batch", _set("mz", lambda t: t[:1]), ValueError, "mz"),
    ("mz int", _set("mz", lambda t: t.long()), TypeError, "mz"),
    ("mz NaN", set_at("mz", (1, 2), float("nan")), ValueError, "mz"),
    ("mz inf", set_at("mz", (0, 0), float("inf")), ValueError, "mz"),
    ("mz on another device", _on_meta("mz"), ValueError, "mz"),
    ("intensity shape", _set("intensity", lambda t: t[:, :-1]), ValueError, "intensity"),
    ("intensity batch", _set("intensity", lambda t: t[:1]), ValueError, "intensity"),
    ("intensity NaN", set_at("intensity", (0, 3), float("nan")), ValueError, "intensity"),
    ("intensity negative", set_at("intensity", (1, 1), -0.5), ValueError, "intensity"),
    ("intensity on another device", _on_meta("intensity"), ValueError, "intensity"),
    ("peak_mask shape", _set("peak_mask", lambda t: t[:, :-1]), ValueError, "peak_mask"),
    ("peak_mask float", _set("peak_mask", lambda t: t.double()), TypeError, "peak_mask"),
    ("peak_mask not 0/1", _set("peak_mask", lambda t: t.int() * 3), ValueError, "peak_mask"),
    ("peak_mask on another device", _on_meta("peak_mask"), ValueError, "peak_mask"),
    ("direction", _set("direction", "peaks"), ValueError, "direction"),
    ("distance", _set("distance", "mDa"), ValueError, "distance"),
    ("reduction", _set("reduction", "avg"), ValueError, "reduction"),
    ("ion_types unknown", _set("ion_types", ("b", "q")), ValueError, "ion_types"),
    ("ion_types a string", _set("ion_types", "by"), ValueError, "ion_types"),
    ("ion_types empty", _set("ion_types", ()), ValueError, "ion_types"),
    ("ion_types repeated", _set("ion_types", ("b", "b")), ValueError, "ion_types"),
    ("charges zero", _set("charges", (0, 1)), ValueError, "charges"),
    ("charges fractional", _set("charges", (1.5,)), ValueError, "charges"),
    ("charges empty", _set("charges", ()), ValueError, "charges"),
    ("distance_scale zero", _set("distance_scale", 0.0), ValueError, "distance_scale"),
    ("distance_scale negative", _set("distance_scale", -0.02), ValueError, "distance_scale"),
    ("distance_scale nan", _set("distance_scale", float("nan")), ValueError, "distance_scale"),
    ("distance_scale inf", _set("distance_scale", float("inf")), ValueError, "distance_scale"),
    ("intensity_power negative", _set("intensity_power", -1.0), ValueError, "intensity_power"),
    # Wrong types, None included: None is not "the default" for these options.
    ("direction None", _set("direction", None), ValueError, "direction"),
    ("distance None", _set("distance", None), ValueError, "distance"),
    ("ion_types None", _set("ion_types", None), TypeError, "ion_types"),
    ("ion_types numbers", _set("ion_types", [1, 2]), ValueError, "ion_types"),
    ("charges None", _set("charges", None), TypeError, "charges"),
    ("charges letters", _set("charges", ("a",)), TypeError, "charges"),
    ("distance_scale text", _set("distance_scale", "tau"), TypeError, "distance_scale"),
    ("intensity_power None", _set("intensity_power", None), TypeError, "intensity_power"),
]

PRECURSOR_CASES = PREDICTION_CASES + [
    ("precursor_mz rank 2", _set("precursor_mz", lambda t: t[:, None]), ValueError, "precursor_mz"),
    ("precursor_mz batch", _set("precursor_mz", lambda t: t[:1]), ValueError, "precursor_mz"),
    ("precursor_mz int", _set("precursor_mz", lambda t: t.long()), TypeError, "precursor_mz"),
    ("precursor_mz zero", set_at("precursor_mz", 0, 0.0), ValueError, "precursor_mz"),
    ("precursor_mz negative", set_at("precursor_mz", 1, -500.0), ValueError, "precursor_mz"),
    ("precursor_mz NaN", set_at("precursor_mz", 1, float("nan")), ValueError, "precursor_mz"),
    ("precursor_mz inf", set_at("precursor_mz", 0, float("inf")), ValueError, "precursor_mz"),
    ("precursor_mz on another device", _on_meta("precursor_mz"), ValueError, "precursor_mz"),
    ("charge float", _set("charge", lambda t: t.double()), TypeError, "charge"),
    ("charge bool", _set("charge", lambda t: t > 0), TypeError, "charge"),
    ("charge an int", _set("charge", 2), TypeError, "charge"),
    ("charge shape", _set("charge", lambda t: t[:1]), ValueError, "charge"),
    ("charge zero", set_at("charge", 1, 0), ValueError, "charge"),
    ("charge negative", set_at("charge", 0, -2), ValueError, "charge"),
    ("charge on another device", _on_meta("charge"), ValueError, "charge"),
    ("scale zero", _set("scale", 0.0), ValueError, "scale"),
    ("scale inf", _set("scale", float("inf")), ValueError, "scale"),
    ("isotope_errors negative", _set("isotope_errors", (0, -1)), ValueError, "isotope_errors"),
    ("isotope_errors fractional", _set("isotope_errors", (0.5,)), ValueError, "isotope_errors"),
    ("isotope_errors empty", _set("isotope_errors", ()), ValueError, "isotope_errors"),
    ("isotope_errors None", _set("isotope_errors", None), TypeError, "isotope_errors"),
    ("isotope_errors an int", _set("isotope_errors", 1), TypeError, "isotope_errors"),
    ("scale None", _set("scale", None), TypeError, "scale"),
    ("scale text", _set("scale", "large"), TypeError, "scale"),
    ("reduction", _set("reduction", "max"), ValueError, "reduction"),
]


#: Bad values: by default a NaN loss without a host sync, an error naming the argument only with
#: check_values=True (tests/test_bad_values.py checks the NaN on both backends).
VALUE_CASES = {"logits NaN", "logits inf", "masses NaN", "residue_masses NaN", "mz NaN", "mz inf", "intensity NaN",
               "intensity negative", "precursor_mz zero", "precursor_mz negative", "precursor_mz NaN",
               "precursor_mz inf", "charge zero", "charge negative"}


#: Integer masks holding other values than 0/1: read as "nonzero is True" without a host sync by
#: default, an error naming the mask with check_values=True.
CHECKED_ONLY = {"mask not 0/1", "peak_mask not 0/1"}


def _expect_error(function, name, args, error, argument):
    """The call raises naming ``argument``; a bad value only with check_values=True, else it gives NaN."""
    if name in VALUE_CASES:
        assert torch.isnan(_call(function, args)).any(), name
    if name in VALUE_CASES | CHECKED_ONLY:
        args = dict(args, check_values=True)
    with pytest.raises(error, match=named(argument)):
        _call(function, args)


def named(argument):
    """A pattern for the argument's name as a whole word ("mask" is not found in "peak_mask")."""
    return rf"\b{re.escape(argument)}\b"


def _call(function, args):
    args = dict(args)
    return function(args.pop("logits"), *(args.pop(k) for k in list(args)[:2]), **args)


@pytest.mark.parametrize("name, edit, error, argument", SPECTRUM_CASES, ids=[c[0] for c in SPECTRUM_CASES])
def test_spectrum_matching_loss_rejects(name, edit, error, argument):
    args = spectrum_args()
    _call(peptide_losses.spectrum_matching_loss, args)  # valid before the edit
    edit(args)
    _expect_error(peptide_losses.spectrum_matching_loss, name, args, error, argument)


@pytest.mark.parametrize("name, edit, error, argument", PRECURSOR_CASES, ids=[c[0] for c in PRECURSOR_CASES])
def test_precursor_mass_loss_rejects(name, edit, error, argument):
    args = precursor_args()
    _call(peptide_losses.precursor_mass_loss, args)
    edit(args)
    _expect_error(peptide_losses.precursor_mass_loss, name, args, error, argument)


# precursor_ppm takes neither scale nor reduction, and always runs the reference (no backend).
PPM_CASES = [c for c in PRECURSOR_CASES if not c[0].startswith(("scale", "reduction", "backend"))]


@pytest.mark.parametrize("name, edit, error, argument", PPM_CASES, ids=[c[0] for c in PPM_CASES])
def test_precursor_ppm_rejects(name, edit, error, argument):
    args = precursor_args()
    args.pop("backend")
    _call(peptide_losses.precursor_ppm, args)
    edit(args)
    _expect_error(peptide_losses.precursor_ppm, name, args, error, argument)


def test_padded_peaks_may_hold_anything():
    args = spectrum_args()
    args["peak_mask"] = args["peak_mask"].clone()
    args["peak_mask"][:, -2:] = False
    expected = _call(peptide_losses.spectrum_matching_loss, args)
    for name, value in (("mz", float("nan")), ("intensity", -1.0), ("intensity", float("inf"))):
        edited = dict(args, **{name: args[name].clone()})
        edited[name][:, -2:] = value
        assert torch.equal(_call(peptide_losses.spectrum_matching_loss, edited), expected)


def test_integer_masks_of_zeros_and_ones_equal_bool_masks():
    args = spectrum_args()
    args["mask"][1, 2:] = False
    args["peak_mask"][0, 4:] = False
    expected = _call(peptide_losses.spectrum_matching_loss, args)
    as_int = dict(args, mask=args["mask"].to(torch.uint8), peak_mask=args["peak_mask"].long())
    assert torch.equal(_call(peptide_losses.spectrum_matching_loss, as_int), expected)


def test_vocabulary_as_masses_equals_its_mass_tensor():
    args = spectrum_args()
    expected = _call(peptide_losses.spectrum_matching_loss, args)
    assert torch.equal(_call(peptide_losses.spectrum_matching_loss, dict(args, masses=VOCAB)), expected)
    p_args = precursor_args()
    expected = _call(peptide_losses.precursor_mass_loss, p_args)
    assert torch.equal(_call(peptide_losses.precursor_mass_loss, dict(p_args, masses=VOCAB)), expected)


def test_without_check_values_shape_errors_stay_immediate_and_bad_values_give_nan():
    args = spectrum_args()
    args["intensity"] = args["intensity"].clone()
    args["intensity"][0, 0] = -1.0
    assert torch.isnan(_call(peptide_losses.spectrum_matching_loss, dict(args, check_values=False)))
    with pytest.raises(ValueError, match="logits"):
        _call(peptide_losses.spectrum_matching_loss, dict(args, logits=args["logits"][0], check_values=False))


def test_check_values_false_skips_the_integer_mask_check_and_its_sync():
    """The 0/1 check of integer masks is a value check like the others: with check_values=False nothing
    reads the mask on the host, and a 2 counts as True."""
    args = spectrum_args()
    expected = _call(peptide_losses.spectrum_matching_loss, args)
    twos = dict(args, mask=args["mask"].long() * 2, peak_mask=args["peak_mask"].long() * 2)
    with pytest.raises(ValueError, match=named("mask")):
        _call(peptide_losses.spectrum_matching_loss, dict(twos, check_values=True))
    assert torch.equal(_call(peptide_losses.spectrum_matching_loss, dict(twos, check_values=False)), expected)


def test_triton_backend_where_it_cannot_run_is_an_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match=named("backend")):
        _call(peptide_losses.spectrum_matching_loss, dict(spectrum_args(), backend="triton"))
    with pytest.raises(ValueError, match=named("backend")):
        _call(peptide_losses.precursor_mass_loss, dict(precursor_args(), backend="triton"))


@pytest.mark.parametrize("dtype, expected", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                             (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_output_dtype_and_shapes(dtype, expected):
    args = spectrum_args()
    args["logits"] = args["logits"].to(dtype)
    assert _call(peptide_losses.spectrum_matching_loss, args).dtype == expected
    none = _call(peptide_losses.spectrum_matching_loss, dict(args, reduction="none"))
    assert none.shape == (2,) and none.dtype == expected
    p_args = dict(precursor_args(), logits=args["logits"].detach().requires_grad_())
    assert _call(peptide_losses.precursor_mass_loss, p_args).shape == ()
    p_args.pop("backend")
    ppm = _call(peptide_losses.precursor_ppm, p_args)
    assert ppm.shape == (2,) and ppm.dtype == expected and not ppm.requires_grad and torch.all(ppm >= 0)


@pytest.mark.parametrize("distance, tau", [("da", 0.005), ("ppm", 5.0)])
def test_auto_distance_scale_is_the_benchmarks_tau_in_the_distances_unit(distance, tau):
    args = dict(spectrum_args(), distance=distance)
    expected = _call(peptide_losses.spectrum_matching_loss, dict(args, distance_scale=tau))
    assert torch.equal(_call(peptide_losses.spectrum_matching_loss, args), expected)
    assert torch.equal(_call(peptide_losses.spectrum_matching_loss, dict(args, distance_scale="auto")), expected)
    assert not torch.equal(_call(peptide_losses.spectrum_matching_loss, dict(args, distance_scale=None)), expected)


@pytest.mark.parametrize("function, defaults", [
    (peptide_losses.reference.spectrum_matching_loss, peptide_losses.reference.SPECTRUM_DEFAULTS),
    (peptide_losses.spectrum_matching_loss, peptide_losses.reference.SPECTRUM_DEFAULTS),
    (SpectrumMatchingLoss.__init__, peptide_losses.reference.SPECTRUM_DEFAULTS),
    (peptide_losses.reference.precursor_mass_loss, peptide_losses.reference.PRECURSOR_DEFAULTS),
    (peptide_losses.precursor_mass_loss, peptide_losses.reference.PRECURSOR_DEFAULTS),
    (PrecursorMassLoss.__init__, peptide_losses.reference.PRECURSOR_DEFAULTS),
], ids=lambda x: getattr(x, "__qualname__", ""))
def test_option_defaults_come_from_one_place(function, defaults):
    parameters = inspect.signature(function).parameters
    for option in dataclasses.fields(defaults):
        assert parameters[option.name].default == getattr(defaults, option.name), option.name


# ------------------------------------------------------------------ modules
SPECTRUM_OPTIONS = dict(direction="both", distance="ppm", distance_scale=20.0, intensity_power=0.5,
                        ion_types=("b", "y", "a"), charges=(1, 2, 3), reduction="none")
PRECURSOR_OPTIONS = dict(scale=50.0, isotope_errors=(0, 1), reduction="sum")


def test_modules_hold_masses_in_a_non_persistent_buffer_that_moves():
    for module in (SpectrumMatchingLoss(VOCAB), PrecursorMassLoss(VOCAB)):
        assert "masses" not in module.state_dict()
        assert dict(module.named_buffers())["masses"].tolist() == list(VOCAB.masses)
        assert module.masses.dtype == torch.float64
        assert module.to("meta").masses.device.type == "meta"


def test_modules_have_a_readable_repr():
    text = repr(SpectrumMatchingLoss(VOCAB, direction="both", distance_scale=0.02))
    assert text.startswith("SpectrumMatchingLoss(") and f"29 tokens ({VOCAB.fingerprint})" in text
    assert "direction='both'" in text and "distance_scale=0.02" in text
    text = repr(PrecursorMassLoss(VOCAB.mass_tensor(), scale=50.0))
    assert text.startswith("PrecursorMassLoss(") and "masses=29 tokens" in text and "scale=50.0" in text


@pytest.mark.parametrize("vocabulary", [VOCAB, VOCAB.mass_tensor()], ids=["Vocabulary", "tensor"])
def test_modules_equal_the_functional(vocabulary):
    b = make_batch(3, 6, 9, seed=1)
    module = SpectrumMatchingLoss(vocabulary, backend="reference", **SPECTRUM_OPTIONS)
    expected = peptide_losses.spectrum_matching_loss(
        b.logits, b.mz, b.intensity, masses=b.masses, mask=b.mask, peak_mask=b.peak_mask, backend="reference",
        **SPECTRUM_OPTIONS)
    assert torch.equal(module(b.logits, b.mz, b.intensity, b.mask, b.peak_mask), expected)
    residue = peptide_losses.reference.expected_residue_masses(b.logits, b.masses)
    assert torch.allclose(module(None, b.mz, b.intensity, b.mask, b.peak_mask, residue_masses=residue), expected)

    module = PrecursorMassLoss(vocabulary, backend="reference", **PRECURSOR_OPTIONS)
    expected = peptide_losses.precursor_mass_loss(
        b.logits, b.precursor_mz, b.charge, masses=b.masses, mask=b.mask, backend="reference", **PRECURSOR_OPTIONS)
    assert torch.equal(module(b.logits, b.precursor_mz, b.charge, b.mask), expected)
    assert torch.allclose(module(None, b.precursor_mz, b.charge, b.mask, residue_masses=residue), expected)


def test_module_rejects_logits_from_another_vocabulary():
    b = make_batch(2, 4, 6, seed=2)
    small = Vocabulary.from_tokens("ACDEFGHIKLMNPQRSTVWY")
    with pytest.raises(ValueError, match="vocabulary size"):
        SpectrumMatchingLoss(small, backend="reference")(b.logits, b.mz, b.intensity)
    with pytest.raises(ValueError, match="vocabulary size"):
        PrecursorMassLoss(small, backend="reference")(b.logits, b.precursor_mz, b.charge)


@pytest.mark.parametrize("make, error, argument", [
    (lambda: SpectrumMatchingLoss("ACDE"), TypeError, "vocabulary"),
    (lambda: SpectrumMatchingLoss(torch.zeros(3, 2)), TypeError, "vocabulary"),
    (lambda: PrecursorMassLoss(torch.arange(5)), TypeError, "vocabulary"),
    (lambda: SpectrumMatchingLoss(VOCAB, direction="up"), ValueError, "direction"),
    (lambda: SpectrumMatchingLoss(VOCAB, distance_scale=-1.0), ValueError, "distance_scale"),
    (lambda: SpectrumMatchingLoss(VOCAB, charges=(0,)), ValueError, "charges"),
    (lambda: SpectrumMatchingLoss(VOCAB, ion_types="by"), ValueError, "ion_types"),
    (lambda: SpectrumMatchingLoss(VOCAB, ion_types=None), TypeError, "ion_types"),
    (lambda: PrecursorMassLoss(VOCAB, scale=-1.0), ValueError, "scale"),
    (lambda: PrecursorMassLoss(VOCAB, isotope_errors=(-1,)), ValueError, "isotope_errors"),
    (lambda: PrecursorMassLoss(VOCAB, reduction="median"), ValueError, "reduction"),
])
def test_modules_reject_bad_construction(make, error, argument):
    with pytest.raises(error, match=named(argument)):
        make()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_mz_is_rejected(dtype):
    b = make_batch(2, 5, 7)
    with pytest.raises(TypeError, match=r"\bmz\b.*float32 or float64"):
        peptide_losses.spectrum_matching_loss(b.logits, b.mz.to(dtype), b.intensity, masses=b.masses, backend="reference")
    with pytest.raises(TypeError, match=r"\bprecursor_mz\b.*float32 or float64"):
        peptide_losses.precursor_mass_loss(b.logits, b.precursor_mz.to(dtype), b.charge, masses=b.masses, backend="reference")


def test_the_checked_options_cache_is_bounded_and_unhashable_options_still_work():
    from peptide_losses import options as functional

    built = []
    build = lambda *values: built.append(values) or values  # noqa: E731
    for scale in range(functional.CHECKED_OPTIONS + 200):
        assert functional._checked(build, (float(scale),)) == (float(scale),)
    assert functional._built.cache_info().currsize <= functional.CHECKED_OPTIONS
    assert functional._checked(build, (0.5,)) == (0.5,) and functional._checked(build, (0.5,)) == (0.5,)
    assert built.count((0.5,)) == 1  # built once, then looked up
    assert functional._checked(build, ([1, 2],)) == ([1, 2],)  # a list: built every time, not cached
