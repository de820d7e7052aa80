"""The error model (peptide_losses.checks) beyond the losses: decoding, candidates, vocabulary and files.

Arguments that are not what they must be raise, naming the argument; a bad
value in one spectrum or candidate makes that row NaN (and a NaN is never
chosen); a file that holds no spectrum or is not text, and a duplicated or
contradictory field, are errors naming the file and the line; spectra
tokenised by one vocabulary do not batch with another.
"""

from __future__ import annotations

import dataclasses
import gzip
import math
import re

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pyteomics import mass

from helpers import DEVICE, examples
from helpers.vocabulary import peptides
from peptide_losses import PrecursorMassLoss, SpectrumMatchingLoss, Vocabulary, precursor_mass_loss, spectrum_scores
from peptide_losses.decoding import beam_search, candidate_ppm, rerank
from peptide_losses.integrations.candidates import candidate_scores, candidate_tokens
from peptide_losses.mgf_errors import MGFFormatError
from peptide_losses.spectra import Preprocessing, Spectrum, collate, read_mgf

V = Vocabulary.default()
M = V.mass_tensor()
NAN, INF = float("nan"), float("inf")
#: Casanovo's layout: a zero-mass stop token "$" among the tokens.
WITH_STOP = Vocabulary.from_tokens(["$", *V.tokens[1:]], special=("$",))


def named(argument: str) -> str:
    """A regex for a message that names ``argument`` as a word."""
    return rf"(^|\W){re.escape(argument)}\W"


def rows(*peptides_: str, length: int = 8) -> torch.Tensor:
    """(1, K, length) token rows of peptides, padding after each."""
    return torch.tensor([[V.encode(p) + [0] * (length - len(V.encode(p))) for p in peptides_]])


# ---------------------------------------------------------------------------------------------- rerank
def expected_choice(model, ppm, spectrum, tolerance, weight):
    """Index of the best finite ``model - 1[not ppm <= tolerance] - weight * spectrum`` per spectrum, first
    among equals, -1 where none is finite: the rule, in Python floats."""
    out = []
    for b in range(len(model)):
        combined = [model[b][k] - (0.0 if ppm is None or ppm[b][k] <= tolerance else 1.0)
                    - (weight * spectrum[b][k] if weight else 0.0) for k in range(len(model[b]))]
        finite = [(c, -k) for k, c in enumerate(combined) if math.isfinite(c)]
        out.append(-max(finite)[1] if finite else -1)
    return out


# Exactly representable scores, so that float32 and Python floats agree on every sum.
SCORES = st.sampled_from([NAN, INF, -INF, -3.0, -2.5, -1.0, -0.5, 0.0, 0.25])


@settings(max_examples=examples(60))
@given(st.data())
def test_rerank_never_chooses_a_non_finite_combined_score(data):
    batch, k = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5))
    grid = st.lists(st.lists(SCORES, min_size=k, max_size=k), min_size=batch, max_size=batch)
    model = data.draw(grid)
    ppm = data.draw(st.none() | st.lists(st.lists(st.sampled_from([NAN, 0.0, 5.0, 30.0, INF]), min_size=k,
                                                  max_size=k), min_size=batch, max_size=batch))
    spectrum, weight = data.draw(grid), data.draw(st.sampled_from([0.0, 1.0, -1.0, 2.0, 0.5]))
    tolerance = data.draw(st.sampled_from([0.0, 20.0, INF]))
    tokens = torch.arange(1, batch * k + 1).view(batch, k, 1).repeat(1, 1, 3)
    choice = rerank(tokens, torch.tensor(model),
                    precursor_ppm=None if ppm is None else torch.tensor(ppm, dtype=torch.float64),
                    tolerance_ppm=tolerance, spectrum_scores=torch.tensor(spectrum), weight=weight)
    expected = expected_choice(model, ppm, spectrum, tolerance, weight)
    assert choice.index.tolist() == expected
    for b, index in enumerate(expected):
        assert choice.tokens[b].tolist() == ([0, 0, 0] if index < 0 else tokens[b, index].tolist())


def test_a_candidate_outside_the_vocabulary_is_scored_nan_and_never_chosen():
    # The model prefers the candidate with a token outside the vocabulary; its spectrum score is NaN.
    tokens = rows("PEPTIDEK", "EPPTIDEK")
    tokens[0, 0, 2] = len(V)
    mz = torch.tensor([[300.0, 400.0, 500.0, 600.0]])
    scores = spectrum_scores(tokens, mz, torch.ones_like(mz), masses=V, backend="reference")
    assert scores[0, 0].isnan() and scores[0, 1].isfinite()
    assert rerank(tokens, torch.tensor([[-0.1, -0.5]]), spectrum_scores=scores, weight=1.0).index.item() == 1


def test_a_nan_precursor_ppm_is_outside_the_tolerance():
    choice = rerank(rows("PEPK", "PEKP"), torch.tensor([[-0.1, -0.5]]), precursor_ppm=torch.tensor([[NAN, 3.0]]))
    assert choice.index.item() == 1 and choice.combined[0, 0].item() == pytest.approx(-1.1)


@pytest.mark.parametrize("arguments, error, argument", [
    (dict(weight=NAN), ValueError, "weight"),
    (dict(weight=INF), ValueError, "weight"),
    (dict(weight="1"), TypeError, "weight"),
    (dict(tolerance_ppm=NAN), ValueError, "tolerance_ppm"),
    (dict(tolerance_ppm=-1.0), ValueError, "tolerance_ppm"),
    (dict(tolerance_ppm=None), TypeError, "tolerance_ppm"),
    (dict(precursor_ppm=torch.zeros(1, 3)), ValueError, "precursor_ppm"),
    (dict(precursor_ppm=torch.zeros(1, 2, dtype=torch.long)), TypeError, "precursor_ppm"),
    (dict(spectrum_scores=[[0.0, 1.0]], weight=1.0), TypeError, "spectrum_scores"),
    (dict(model_scores=torch.zeros(2, 2)), ValueError, "model_scores"),
    (dict(model_scores=None), TypeError, "model_scores"),
    (dict(tokens=torch.zeros(1, 2, 4)), TypeError, "tokens"),
    (dict(tokens=torch.zeros(1, 0, 4, dtype=torch.long), model_scores=torch.zeros(1, 0)), ValueError, "tokens"),
])
def test_rerank_rejects_bad_arguments_naming_them(arguments, error, argument):
    call = {"tokens": rows("PEPK", "PEKP"), "model_scores": torch.tensor([[-0.1, -0.5]]), **arguments}
    with pytest.raises(error, match=named(argument)):
        rerank(call.pop("tokens"), call.pop("model_scores"), **call)


# ---------------------------------------------------------------------------------------------- candidate_ppm
def test_candidate_ppm_is_the_precursor_error_and_nan_only_at_bad_candidates():
    observed = mass.calculate_mass(sequence="PEPTIDEK", ion_type="M", charge=2)  # [M+2H]2+ from pyteomics
    other = mass.calculate_mass(sequence="PEPTIDER", ion_type="M", charge=2)
    tokens = rows("PEPTIDEK", "PEPTIDER", "PEPTIDEK", "PEPTIDEK", "PEPTIDEK", length=10)
    tokens[0, 2, 3] = -1  # outside the vocabulary
    tokens[0, 3, 3] = len(V) + 11  # outside the vocabulary
    tokens[0, 4, 9] = V.index("K")  # a residue after the padding: a gap
    ppm = candidate_ppm(tokens, M, torch.tensor([observed], dtype=torch.float64), torch.tensor([2]))
    assert ppm[0, 0].item() < 1e-3
    assert ppm[0, 1].item() == pytest.approx(abs(other - observed) / observed * 1e6, rel=1e-6)
    assert ppm[0, 2:].isnan().all()


@pytest.mark.parametrize("change, error, argument", [
    (dict(masses=M.half()), TypeError, "masses"),
    (dict(masses=M.bfloat16()), TypeError, "masses"),
    (dict(masses=None), ValueError, "masses"),
    (dict(masses=M[None]), ValueError, "masses"),
    (dict(precursor_mz=torch.tensor([500.0], dtype=torch.float16)), TypeError, "precursor_mz"),
    (dict(precursor_mz=torch.tensor([500.0, 600.0], dtype=torch.float64)), ValueError, "precursor_mz"),
    (dict(charge=torch.tensor([2.5])), TypeError, "charge"),
    (dict(charge=torch.tensor([2, 2])), ValueError, "charge"),
    (dict(isotope_errors=(-1,)), ValueError, "isotope_errors"),
    (dict(isotope_errors=()), ValueError, "isotope_errors"),
    (dict(tokens=torch.zeros(1, 4, dtype=torch.long)), ValueError, "tokens"),
])
def test_candidate_ppm_rejects_bad_arguments_naming_them(change, error, argument):
    call = {"tokens": rows("PEPK"), "masses": M, "precursor_mz": torch.tensor([500.0], dtype=torch.float64),
            "charge": torch.tensor([2]), "isotope_errors": (0,), **change}
    with pytest.raises(error, match=named(argument)):
        candidate_ppm(**call)


# ---------------------------------------------------------------------------------------------- spectrum_scores
def ion_spectrum(sequence: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, N) m/z of the singly charged b and y ions of ``sequence`` (pyteomics), intensities 1."""
    ions = [mass.fast_mass(sequence[:i], ion_type="b", charge=1) for i in range(1, len(sequence))]
    ions += [mass.fast_mass(sequence[i:], ion_type="y", charge=1) for i in range(1, len(sequence))]
    mz = torch.tensor([sorted(ions)])
    return mz, torch.ones_like(mz)


@settings(max_examples=examples(30))
@given(peptides(V, max_size=10), st.integers(0, 3), st.data())
def test_a_stop_token_after_the_peptide_never_counts_and_a_residue_after_the_end_is_nan(peptide, pad, data):
    encoded = [WITH_STOP.index(t) for t in peptide]
    length = len(encoded) + 2 + pad
    stop = WITH_STOP.index("$")
    gap_at = data.draw(st.integers(len(encoded) + 1, length - 1))
    residue = data.draw(st.integers(2, len(WITH_STOP) - 1))
    plain = encoded + [0] * (length - len(encoded))
    stopped = encoded + [stop] + [0] * (length - len(encoded) - 1)
    after_stop, after_padding = list(stopped), list(plain)
    after_stop[gap_at] = after_padding[gap_at] = residue
    tokens = torch.tensor([[plain, stopped, after_stop, after_padding]])
    mz, intensity = ion_spectrum("PEPTIDEK")
    scores = spectrum_scores(tokens, mz.float(), intensity, masses=WITH_STOP, backend="reference")[0]
    assert scores[0].isfinite() and torch.equal(scores[1], scores[0])
    assert scores[2:].isnan().all()
    # With the mass tensor the stop token is a zero-mass token: the same rule.
    assert torch.equal(spectrum_scores(tokens, mz.float(), intensity, masses=WITH_STOP.mass_tensor(),
                                       backend="reference")[0].isnan(), scores.isnan())


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_a_gap_in_a_candidate_is_nan_on_both_backends_and_only_in_its_row(backend):
    tokens = rows("PEPTIDEK", "PEPTIDEK", "EPPTIDEK", length=10).to(DEVICE)
    tokens[0, 1, 9] = V.index("G")
    mz, intensity = ion_spectrum("PEPTIDEK")
    scores = spectrum_scores(tokens, mz.float().to(DEVICE), intensity.float().to(DEVICE), masses=V,
                             backend=backend).cpu()
    assert scores.isnan().tolist() == [[False, True, False]]
    assert scores[0, 0] < scores[0, 2]  # the true peptide explains its own ions best


# ---------------------------------------------------------------------------------------------- beam_search
def scripted(seed: int, batch: int, k: int, length: int, vocab: int, poison=None):
    """A model whose logits depend on the spectrum, the step and the last token; it stops (token 0) only
    at the last step, so every beam is alive until then. ``poison``: (spectrum, step, rows of its beam,
    a (vocab,) bool of the logits to overwrite, the value) puts a bad value there."""
    table = torch.randn(batch, length, vocab, vocab, generator=torch.Generator().manual_seed(seed))
    table[..., 0] = -20.0
    table[:, -1, :, 0] = 20.0

    def next_log_probs(prefix):
        t = prefix.shape[1]
        last = prefix[:, -1] if t else torch.zeros(len(prefix), dtype=torch.long)
        logits = table[torch.arange(len(prefix)) // k, t, last].clone()
        if poison is not None and poison[1] == t:
            b, _, beam_rows, where, value = poison
            for j in beam_rows:
                logits[b * k + j, where] = value
        return logits
    return next_log_probs


@settings(max_examples=examples(25))
@given(st.integers(0, 2 ** 16), st.integers(1, 3), st.integers(1, 3), st.integers(1, 5), st.data())
def test_a_bad_model_output_makes_its_spectrums_candidates_nan_and_leaves_the_others(seed, batch, k, length, data):
    vocab = 6
    b = data.draw(st.integers(0, batch - 1))
    step = data.draw(st.integers(0, length - 1))
    beam_rows = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    kind = data.draw(st.sampled_from(["nan", "+inf", "all -inf"]))
    where = (torch.ones(vocab, dtype=torch.bool) if kind == "all -inf"
             else torch.tensor(data.draw(st.lists(st.booleans(), min_size=vocab, max_size=vocab).filter(any))))
    value = {"nan": NAN, "+inf": INF, "all -inf": -INF}[kind]
    clean = beam_search(scripted(seed, batch, k, length, vocab), batch, length, k)
    bad = beam_search(scripted(seed, batch, k, length, vocab, (b, step, beam_rows, where, value)), batch, length, k)
    assert clean.finished[:, 0].all() and clean.log_prob[:, 0].isfinite().all()
    assert bad.log_prob[b].isnan().all() and not bad.finished[b].any()
    others = torch.arange(batch) != b
    assert torch.equal(bad.tokens[others], clean.tokens[others])
    assert torch.equal(bad.log_prob[others], clean.log_prob[others])
    assert torch.equal(bad.finished[others], clean.finished[others])
    choice = rerank(bad.tokens, bad.mean_log_prob())
    assert choice.index[b] == -1 and not choice.tokens[b].any()
    assert (choice.index[others] >= 0).all()


@pytest.mark.parametrize("call, error, argument", [
    (lambda model: beam_search(model, 2, 3, 0), ValueError, "beam_size"),
    (lambda model: beam_search(model, 2, 3, 2.5), ValueError, "beam_size"),
    (lambda model: beam_search(model, 0, 3, 2), ValueError, "batch_size"),
    (lambda model: beam_search(model, 2, -1, 2), ValueError, "max_length"),
    (lambda model: beam_search(lambda prefix: model(prefix)[:1], 2, 3, 2), ValueError, "next_log_probs"),
    (lambda model: beam_search(lambda prefix: model(prefix).long(), 2, 3, 2), TypeError, "next_log_probs"),
    (lambda model: beam_search(model, 2, 3, 2, guide=lambda prefix: torch.zeros(4, 3)), ValueError, "guide"),
    (lambda model: beam_search(model, 2, 3, 2, reorder="rows"), TypeError, "reorder"),
    (lambda model: beam_search(None, 2, 3, 2), TypeError, "next_log_probs"),
])
def test_beam_search_rejects_bad_arguments_and_outputs_naming_them(call, error, argument):
    with pytest.raises(error, match=named(argument)):
        call(scripted(0, 2, 2, 3, 6))


# ---------------------------------------------------------------------------------------------- candidate adapters
def test_a_nan_model_score_passes_through_and_is_never_chosen():
    candidates = candidate_tokens([["PEPK", "PEKP"], ["GGK"]], V)
    scores = candidate_scores([[NAN, -0.5], [NAN]], candidates.present)
    assert scores[0, 0].isnan() and scores[1, 0].isnan() and scores[1, 1].isneginf()
    choice = rerank(candidates.tokens, scores)
    assert choice.index.tolist() == [1, -1] and V.decode(choice.tokens[0]) == "PEKP" and not choice.tokens[1].any()


@pytest.mark.parametrize("call, error, argument", [
    (lambda: candidate_tokens([["PEPK"]], V, beam_size=-1), ValueError, "beam_size"),
    (lambda: candidate_tokens([["PEPK"]], V, beam_size=1.5), ValueError, "beam_size"),
    (lambda: candidate_tokens([["PEPK"]], V, max_length=-1), ValueError, "max_length"),
    (lambda: candidate_tokens(None, V), TypeError, "peptides"),
    (lambda: candidate_tokens([None], V), TypeError, "peptides[0]"),
    (lambda: candidate_tokens([["PEPK", None]], V), TypeError, "peptides[0][1]"),
    (lambda: candidate_tokens([["PEPK", ["P", 5]]], V), TypeError, "peptides[0][1]"),
    (lambda: candidate_tokens([["PEPK"]], None), TypeError, "vocabulary"),
    (lambda: candidate_scores([["high"]], torch.ones(1, 1, dtype=torch.bool)), TypeError, "scores[0][0]"),
    (lambda: candidate_scores([None], torch.ones(1, 1, dtype=torch.bool)), TypeError, "scores[0]"),
    (lambda: candidate_scores(None, torch.ones(1, 1, dtype=torch.bool)), TypeError, "scores"),
    (lambda: candidate_scores([[0.5]], torch.ones(1, 1)), TypeError, "present"),
])
def test_candidate_adapters_reject_bad_arguments_naming_them(call, error, argument):
    with pytest.raises(error, match=named(argument)):
        call()


# ---------------------------------------------------------------------------------------------- read_mgf
SPECTRUM_TEXT = "BEGIN IONS\nTITLE={title}\nPEPMASS=500.0\nCHARGE=2+\nSEQ=PEPK\n100.0 1.0\n200.0 2.0\nEND IONS\n"


def two_spectra(begin="BEGIN IONS", end="END IONS") -> str:
    return "".join(SPECTRUM_TEXT.format(title=t).replace("BEGIN IONS", begin).replace("END IONS", end)
                   for t in ("first", "second"))


def mgf_error(path) -> str:
    with pytest.raises(MGFFormatError) as caught:
        read_mgf(path, V)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_read_mgf_names_a_path_that_is_not_one():
    with pytest.raises(TypeError, match=named("path")):
        read_mgf(None, V)


def test_a_byte_order_mark_keeps_the_first_spectrum(tmp_path):
    path = tmp_path / "bom.mgf"
    path.write_bytes(b"\xef\xbb\xbf" + two_spectra().encode())
    assert [s.title for s in read_mgf(path, V)] == ["first", "second"]


def test_begin_and_end_ions_are_read_in_any_case(tmp_path):
    path = tmp_path / "lower.mgf"
    path.write_text(two_spectra("begin ions", "End Ions"))
    spectra = read_mgf(path, V)
    assert [s.title for s in spectra] == ["first", "second"]
    assert spectra[0].mz.tolist() == [100.0, 200.0] and spectra[0].charge == 2


@pytest.mark.parametrize("text", ["", "\n\n", "title,pepmass,charge\nx,500.0,2\n",
                                  '<?xml version="1.0"?>\n<mzML version="1.1">\n<run id="a"/>\n</mzML>\n',
                                  "# only a comment\n"], ids=["empty", "blank", "csv", "xml", "comment"])
def test_a_file_without_spectra_is_an_error_naming_it(tmp_path, text):
    path = tmp_path / "none.mgf"
    path.write_text(text)
    assert "holds no spectrum" in mgf_error(path)


def test_bytes_that_are_not_utf8_are_an_error_naming_the_line_and_byte(tmp_path):
    utf16 = tmp_path / "utf16.mgf"
    utf16.write_bytes(two_spectra().encode("utf-16"))  # starts with the BOM ff fe: 0xff never starts UTF-8
    assert "line 1, byte 0:" in mgf_error(utf16)
    compressed = tmp_path / "gz.mgf"
    compressed.write_bytes(gzip.compress(two_spectra().encode()))  # 1f 8b: 0x8b is a continuation byte
    assert "line 1, byte 1:" in mgf_error(compressed)
    latin1 = tmp_path / "latin1.mgf"
    text = two_spectra().replace("TITLE=second", "TITLE=caf\u00e9")
    latin1.write_bytes(text.encode("latin-1"))
    line = text[: text.index("caf")].count("\n") + 1
    assert f"line {line}, byte {text.index('caf') + 3}:" in mgf_error(latin1)


BROKEN = {
    # name: (a line of the second spectrum, what it becomes (lines), the field named, what the message says);
    # the message names the last line of the replacement
    "PEPMASS inf": ("PEPMASS=500.0", "PEPMASS=inf", "PEPMASS", "finite"),
    "PEPMASS nan": ("PEPMASS=500.0", "PEPMASS=nan", "PEPMASS", "finite"),
    "PEPMASS zero": ("PEPMASS=500.0", "PEPMASS=0", "PEPMASS", "> 0"),
    # 0.5 m/z at 2+: a neutral mass of (0.5 - 1.00728) x 2 = -1.01 Da, which no peptide has.
    "PEPMASS below a proton": ("PEPMASS=500.0", "PEPMASS=0.5", "PEPMASS", "exceed a proton's"),
    "two PEPMASS": ("CHARGE=2+", "CHARGE=2+\nPEPMASS=501.0", "PEPMASS", "given twice"),
    "two CHARGE": ("SEQ=PEPK", "SEQ=PEPK\nCHARGE=3+", "CHARGE", "given twice"),
    "two SEQ": ("100.0 1.0", "SEQ=PEPR", "SEQ", "given twice"),
    "lower-case key twice": ("CHARGE=2+", "CHARGE=2+\ncharge=2+", "CHARGE", "given twice"),
    "empty SEQ": ("SEQ=PEPK", "SEQ=", "SEQ", "empty"),
    "PEPMASS charge contradicts CHARGE": ("PEPMASS=500.0", "PEPMASS=500.0 1000 3+", "PEPMASS", "contradicts CHARGE"),
    "charge 2.5": ("CHARGE=2+", "CHARGE=2.5", "CHARGE", "not a charge"),
    "intensity inf": ("200.0 2.0", "200.0 inf", "peak", "intensity must be"),
    "m/z nan": ("200.0 2.0", "nan 2.0", "peak", "m/z must be"),
}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_bad_duplicated_or_contradictory_fields_name_the_spectrum_field_and_line(tmp_path, broken):
    line, replacement, field, says = BROKEN[broken]
    first, second = (SPECTRUM_TEXT.format(title=t) for t in ("first", "second"))
    path = tmp_path / "broken.mgf"
    path.write_text(first + second.replace(line, replacement))
    message = mgf_error(path)
    assert message.startswith(f"{path}: spectrum 1 (TITLE=second), line "), message
    assert f", {field}: " in message and says in message, message
    number = len(first.splitlines()) + second.splitlines().index(line) + len(replacement.splitlines())
    assert f"line {number}," in message, message


def test_a_line_outside_any_spectrum_is_an_error_not_dropped(tmp_path):
    path = tmp_path / "stray.mgf"
    first, second = (SPECTRUM_TEXT.format(title=t) for t in ("first", "second"))
    path.write_text(first + "300.0 5.0\n" + second)
    assert f"line {len(first.splitlines()) + 1}:" in mgf_error(path)


def test_header_fields_apply_to_every_spectrum_that_does_not_set_them(tmp_path):
    path = tmp_path / "header.mgf"
    path.write_text("CHARGE=3+\n" + SPECTRUM_TEXT.format(title="own").replace("CHARGE=2+\n", "") +
                    SPECTRUM_TEXT.format(title="set"))
    assert [s.charge for s in read_mgf(path, V)] == [3, 2]
    path.write_text("CHARGE=3+\nCHARGE=2+\n" + SPECTRUM_TEXT.format(title="x"))
    assert "header, line 2, CHARGE: given twice" in mgf_error(path)


# ---------------------------------------------------------------------------------------------- collate
def test_spectra_read_with_another_vocabulary_of_the_same_size_do_not_batch(tmp_path):
    path = tmp_path / "a.mgf"
    path.write_text(two_spectra() + "BEGIN IONS\nTITLE=bare\nPEPMASS=400.0\nCHARGE=2+\n100.0 1.0\nEND IONS\n")
    spectra = read_mgf(path, V)
    swapped = Vocabulary(V.tokens[:1] + V.tokens[1:][::-1], V.masses[:1] + V.masses[1:][::-1])
    assert len(swapped) == len(V)
    with pytest.raises(ValueError, match=r"spectrum 0 \(TITLE=first\).*vocabulary"):
        collate(spectra, swapped)
    assert V.decode(collate(spectra, V).tokens[0]) == "PEPK"
    # An unannotated spectrum has no indices to misread: any vocabulary batches it, and so does one
    # whose annotation was dropped.
    assert not collate(spectra[2:], swapped).mask.any()
    assert not collate([dataclasses.replace(spectra[0], tokens=None)], swapped).mask.any()


def spectrum(**change) -> Spectrum:
    fields = dict(mz=np.array([100.0, 200.0]), intensity=np.array([1.0, 0.5]), precursor_mz=400.0, charge=2,
                  sequence="PEK", tokens=V.encode("PEK"), title="t")
    fields.update(change)
    return Spectrum(**fields)


def test_collate_takes_any_iterable_of_spectra_and_list_peaks():
    listed = collate([spectrum(), spectrum(title="u")], V)
    generated = collate((s for s in [spectrum(), spectrum(title="u")]), V)
    list_peaks = collate([spectrum(mz=[100.0, 200.0], intensity=[1.0, 0.5]), spectrum(title="u")], V)
    for other in (generated, list_peaks):
        for name in ("mz", "intensity", "peak_mask", "precursor_mz", "charge", "tokens"):
            assert torch.equal(getattr(other, name), getattr(listed, name))


@pytest.mark.parametrize("spectra, error, says", [
    ({"a": spectrum()}.items(), TypeError, r"spectra\[0\] must be a Spectrum"),
    ({"a": spectrum()}, TypeError, r"spectra\[0\] must be a Spectrum"),
    (spectrum(), TypeError, "spectra must be"),
    ([spectrum(intensity=np.array([1.0]))], ValueError, r"spectrum 0 \(TITLE=t\): mz and intensity differ"),
    ([spectrum(mz=np.array([[100.0, 200.0]]))], ValueError, r"spectrum 0 \(TITLE=t\): mz must be a 1-D"),
    ([spectrum(), spectrum(charge=2.5, title="half")], ValueError, r"spectrum 1 \(TITLE=half\): charge"),
    ([spectrum(tokens=[2.5, 3])], ValueError, r"spectrum 0 \(TITLE=t\) has token indices \[2.5\]"),
    ([spectrum(tokens=[3, 0, 4])], ValueError, r"spectrum 0 \(TITLE=t\) has token indices \[0\]"),
    ([spectrum(precursor_mz=None)], TypeError, r"spectrum 0 \(TITLE=t\): precursor_mz"),
])
def test_collate_names_the_spectrum_that_is_not_a_spectrum(spectra, error, says):
    with pytest.raises(error, match=says):
        collate(spectra, V)


@pytest.mark.parametrize("change, error, argument", [
    (dict(max_length=2.5), ValueError, "max_length"),
    (dict(max_peaks=-1), ValueError, "max_peaks"),
    (dict(vocabulary=None), TypeError, "vocabulary"),
])
def test_collate_rejects_bad_arguments_naming_them(change, error, argument):
    call = {"spectra": [spectrum()], "vocabulary": V, **change}
    with pytest.raises(error, match=named(argument)):
        collate(**call)


# ---------------------------------------------------------------------------------------------- Vocabulary
@pytest.mark.parametrize("call, error, says", [
    (lambda: V.tokenize(None), TypeError, "sequence must be a peptide str"),
    (lambda: V.tokenize(b"PEPK"), TypeError, "sequence must be a peptide str"),
    (lambda: V.tokenize(["P", "K"]), TypeError, "sequence must be a peptide str"),
    (lambda: V.encode(None), TypeError, "sequence must be a peptide str"),
    (lambda: V.decode([2.7]), TypeError, "index 2.7 at position 0 is not an integer"),
    (lambda: V.decode([3, 2.0]), TypeError, "index 2.0 at position 1 is not an integer"),
    (lambda: V.decode(torch.tensor([3.0])), TypeError, "index 3.0 at position 0"),
    (lambda: V.decode(None), TypeError, "indices must be"),
    (lambda: V.residue_masses([99]), ValueError, "index 99 at position 0 is outside the vocabulary"),
    (lambda: V.residue_masses([3, None]), TypeError, "index None at position 1"),
    (lambda: V.peptide_mass(""), ValueError, "holds no residue"),
    (lambda: V.precursor_mz("", 2), ValueError, "holds no residue"),
    (lambda: V.precursor_mz([0, 0], 2), ValueError, "holds no residue"),
    (lambda: V.precursor_mz("PEPK", 2.5), ValueError, "charge must be an integer >= 1, got 2.5"),
    (lambda: V.precursor_mz("PEPK", "2"), TypeError, "charge"),
    (lambda: Vocabulary.from_masses({"A": NAN}), ValueError, "mass of token 'A' must be a finite number"),
    (lambda: Vocabulary.from_masses({"A": INF}), ValueError, "mass of token 'A' must be a finite number"),
    (lambda: Vocabulary.from_masses({"A": 71.0, "K": "heavy"}), TypeError, "mass of token 'K'"),
    (lambda: Vocabulary.from_masses(["A"]), TypeError, "masses must be a mapping"),
    (lambda: Vocabulary.from_tokens(["A", 5]), TypeError, "tokens must be token names"),
    (lambda: Vocabulary(("<pad>", "A"), (0.0, None)), TypeError, "mass of token 'A'"),
    (lambda: Vocabulary(("<pad>", "$"), (0.0, 0.0), special="$"), TypeError, "special must be"),
])
def test_the_vocabulary_rejects_what_it_cannot_read(call, error, says):
    with pytest.raises(error, match=re.escape(says)):
        call()


def test_integral_indices_of_any_integer_type_decode():
    assert V.decode([np.int64(V.index("P")), V.index("K")]) == V.decode(torch.tensor(V.encode("PK"))) == "PK"
    assert V.precursor_mz("PEPK", 2.0) == V.precursor_mz("PEPK", 2)


# ---------------------------------------------------------------------------------------------- options and modules
@pytest.mark.parametrize("options, error, argument", [
    (dict(max_peaks=2.5), ValueError, "max_peaks"),
    (dict(max_peaks="150"), TypeError, "max_peaks"),
    (dict(remove_precursor_tol=NAN), ValueError, "remove_precursor_tol"),
    (dict(remove_precursor_tol=-1.0), ValueError, "remove_precursor_tol"),
    (dict(min_mz=NAN), ValueError, "min_mz"),
    (dict(max_mz=NAN), ValueError, "max_mz"),
    (dict(min_mz=500.0, max_mz=100.0), ValueError, "max_mz"),
    (dict(min_intensity=NAN), ValueError, "min_intensity"),
    (dict(sqrt="no"), TypeError, "sqrt"),
])
def test_preprocessing_rejects_bad_options_naming_them(options, error, argument):
    with pytest.raises(error, match=named(argument)):
        Preprocessing(**options)


@pytest.mark.parametrize("make", [
    lambda **o: SpectrumMatchingLoss(V, **o),
    lambda **o: PrecursorMassLoss(V, **o),
], ids=["spectrum", "precursor"])
@pytest.mark.parametrize("option, value, error", [
    ("backend", "cuda", ValueError),
    ("backend", None, ValueError),
    ("check_values", "no", TypeError),
    ("check_values", 1, TypeError),
])
def test_modules_check_backend_and_check_values_at_construction(make, option, value, error):
    with pytest.raises(error, match=named(option)):
        make(**{option: value})


def test_check_values_must_be_a_bool_in_the_functions_too():
    logits = torch.zeros(1, 3, len(V))
    with pytest.raises(TypeError, match=named("check_values")):
        precursor_mass_loss(logits, torch.tensor([500.0], dtype=torch.float64), torch.tensor([2]), masses=V,
                            backend="reference", check_values="no")
