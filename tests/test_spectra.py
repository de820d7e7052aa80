"""MGF reading, preprocessing and collation (peptide_losses.spectra)."""

import numpy as np
import pytest
import torch

from peptide_losses import Vocabulary
from peptide_losses.constants import C13_C12, PROTON
from peptide_losses.mgf_errors import MGFFormatError
from peptide_losses.spectra import Preprocessing, Spectrum, SpectrumBatch, collate, read_mgf

VOCAB = Vocabulary.default()


def write_mgf(path, entries):
    """entries: dicts of header fields (None values left out) plus 'peaks' [(mz, intensity)]."""
    lines = []
    for entry in entries:
        lines.append("BEGIN IONS")
        lines += [f"{k}={v}" for k, v in entry.items() if k != "peaks" and v is not None]
        lines += [f"{mz} {i}" for mz, i in entry["peaks"]]
        lines += ["END IONS", ""]
    path.write_text("\n".join(lines))
    return path


def entry(title, seq, charge=2, pepmass=500.0, peaks=((200.0, 1.0), (100.0, 0.5))):
    return {"TITLE": title, "PEPMASS": pepmass, "CHARGE": f"{charge}+", "SEQ": seq, "peaks": list(peaks)}


# ------------------------------------------------------------------ real file
def test_real_file_reads_every_spectrum_with_its_annotation(real_mgf):
    spectra = read_mgf(real_mgf, VOCAB)
    assert len(spectra) == 128
    assert sorted({s.charge for s in spectra}) == [2, 3]
    assert sum(s.charge == 3 for s in spectra) == 1
    modified = {VOCAB.tokens[t] for s in spectra for t in s.tokens if "[" in VOCAB.tokens[t]}
    assert "C[Carbamidomethyl]" in modified
    for s in spectra:
        assert VOCAB.decode(s.tokens) == s.sequence
        assert np.all(np.diff(s.mz) >= 0) and np.all(s.intensity >= 0)
        # The annotation explains the observed precursor (Casanovo allows isotope errors 0 and 1).
        predicted = VOCAB.precursor_mz(s.tokens, s.charge)
        ppm = min(abs(predicted - (s.precursor_mz - k * C13_C12 / s.charge)) / s.precursor_mz * 1e6 for k in (0, 1))
        assert ppm < 20, (s.title, s.sequence, ppm)


def test_real_file_preprocessing_keeps_the_rules(real_mgf):
    raw = read_mgf(real_mgf, VOCAB)
    pre = Preprocessing(min_mz=100.0, max_mz=1500.0, max_peaks=30, min_intensity=0.05)
    processed = read_mgf(real_mgf, VOCAB, preprocessing=pre)
    assert [s.title for s in processed] == [s.title for s in raw]
    for r, p in zip(raw, processed):
        assert len(p.mz) <= 30 and np.all(np.diff(p.mz) >= 0)
        assert np.all((p.mz >= 100.0) & (p.mz <= 1500.0))
        neutral = (r.precursor_mz - PROTON) * r.charge
        for z in range(1, r.charge + 1):
            assert np.all(np.abs(p.mz - (neutral + z * PROTON) / z) > 2.0)
        if len(p.mz):
            assert p.intensity.max() == pytest.approx(1.0)
            # Kept peaks are sqrt of the raw intensities, up to one common factor.
            raw_of_kept = r.intensity[np.searchsorted(r.mz, p.mz)]
            np.testing.assert_allclose(p.intensity, np.sqrt(raw_of_kept) / np.sqrt(raw_of_kept).max(), rtol=1e-12)
        assert p.tokens == r.tokens and p.precursor_mz == r.precursor_mz


def test_real_file_collates_into_a_batch_the_losses_accept(real_mgf):
    import peptide_losses as pl

    spectra = read_mgf(real_mgf, VOCAB, preprocessing=Preprocessing())[:16]
    batch = collate(spectra, VOCAB)
    rng = np.random.default_rng(0)
    shuffled = batch.tokens.clone()
    for b, s in enumerate(spectra):
        shuffled[b, : len(s.tokens)] = torch.tensor(rng.permutation(s.tokens))

    def per_spectrum(tokens):
        one_hot = torch.nn.functional.one_hot(tokens, len(VOCAB)).float() * 50
        return pl.spectrum_matching_loss(one_hot, batch.mz, batch.intensity, masses=VOCAB, mask=batch.mask,
                                         peak_mask=batch.peak_mask, distance_scale=0.02, reduction="none",
                                         backend="reference")

    true, wrong = per_spectrum(batch.tokens), per_spectrum(shuffled)
    assert torch.isfinite(true).all()
    # The collated peaks, masks and tokens line up: true peptides explain their spectra better.
    assert (true < wrong).float().mean() >= 0.9
    one_hot = torch.nn.functional.one_hot(batch.tokens, len(VOCAB)).float() * 50
    ppm = pl.precursor_ppm(one_hot, batch.precursor_mz, batch.charge, masses=VOCAB, mask=batch.mask,
                           isotope_errors=(0, 1))
    assert ppm.max() < 20


# ------------------------------------------------------------------ notations
def test_delta_and_bracket_notations_give_the_same_tokens(tmp_path):
    path = write_mgf(tmp_path / "a.mgf", [
        entry("bracket", "[Acetyl]-PEPM[Oxidation]C[Carbamidomethyl]K"),
        entry("delta", "+42.011PEPM+15.995C+57.021K"),
        entry("bracket-delta", "[+42.011]-PEPM[+15.995]C[+57.021]K"),
    ])
    spectra = read_mgf(path, VOCAB)
    assert spectra[0].tokens == spectra[1].tokens == spectra[2].tokens
    assert VOCAB.decode(spectra[1].tokens) == "[Acetyl]-PEPM[Oxidation]C[Carbamidomethyl]K"
    assert spectra[1].sequence == "+42.011PEPM+15.995C+57.021K"


def test_unknown_modification_names_spectrum_and_token(tmp_path):
    path = write_mgf(tmp_path / "a.mgf", [entry("fine", "PEPTIDEK"), entry("phospho", "PEPS+79.966K")])
    with pytest.raises(ValueError, match=r"spectrum 1 \(TITLE=phospho\).*S\+79\.966"):
        read_mgf(path, VOCAB)


def test_unknown_modification_skipped_with_a_count(tmp_path):
    path = write_mgf(tmp_path / "a.mgf", [
        entry("a", "PEPS+79.966K"), entry("b", "PEPTIDEK"), entry("c", "PEPY[Phospho]K"),
    ])
    with pytest.warns(UserWarning, match="skipped 2 spectra"):
        spectra = read_mgf(path, VOCAB, unknown="skip")
    assert [s.title for s in spectra] == ["b"]


def test_missing_seq_gives_none_and_an_unannotated_batch_row(tmp_path):
    path = write_mgf(tmp_path / "a.mgf", [entry("none", None), entry("some", "PEPK")])
    spectra = read_mgf(path, VOCAB)
    assert spectra[0].sequence is None and spectra[0].tokens is None
    batch = collate(spectra, VOCAB)
    assert batch.mask.tolist() == [[False] * 4, [True] * 4]
    assert batch.tokens[0].tolist() == [0, 0, 0, 0]


def test_bad_files_and_arguments_raise_clearly(tmp_path):
    no_charge = write_mgf(tmp_path / "c.mgf", [entry("x", "PEPK", charge=None) | {"CHARGE": None}])
    with pytest.raises(ValueError, match=r"TITLE=x.*CHARGE"):
        read_mgf(no_charge, VOCAB)
    fine = write_mgf(tmp_path / "f.mgf", [entry("x", "PEPK")])
    with pytest.raises(ValueError, match="unknown must be"):
        read_mgf(fine, VOCAB, unknown="ignore")
    with pytest.raises(TypeError, match="vocabulary"):
        read_mgf(fine, ["A", "C"])
    with pytest.raises(ValueError, match="max_peaks"):
        Preprocessing(max_peaks=0)
    with pytest.raises(ValueError, match="min_mz"):
        Preprocessing(min_mz=500, max_mz=100)


BROKEN = {
    # what: (edit of the second spectrum's text, the field the message names, what it says)
    "cut off": (lambda text: text[: text.rindex("END IONS")], None, "no END IONS"),
    "CHARGE": (lambda text: text.replace("CHARGE=2+", "CHARGE=two"), "CHARGE", "not a charge"),
    "PEPMASS": (lambda text: text.replace("PEPMASS=500.0", "PEPMASS=abc"), "PEPMASS", "not a number"),
    "peak not numbers": (lambda text: text.replace("100.0 0.5", "100.0 abc"), "peak", "must be numbers"),
    "peak one column": (lambda text: text.replace("100.0 0.5", "100.0"), "peak", "needs m/z and intensity"),
    "negative m/z": (lambda text: text.replace("100.0 0.5", "-100.0 0.5"), "peak", "m/z must be > 0"),
}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_malformed_files_name_the_file_spectrum_field_and_line(tmp_path, broken):
    edit, field, says = BROKEN[broken]
    path = write_mgf(tmp_path / "broken.mgf", [entry("first", "PEPK"), entry("second", "PEPTIDEK")])
    first, second = path.read_text().split("END IONS\n", 1)
    changed = edit(second)
    path.write_text(first + "END IONS\n" + changed)
    with pytest.raises(MGFFormatError) as caught:
        read_mgf(path, VOCAB)
    message = str(caught.value)
    assert message.startswith(f"{path}: spectrum 1 (TITLE=second)"), message
    assert says in message
    if field is not None:
        assert f", {field}: " in message
    # The line named is the edited one (the negative m/z parses: no line, its value instead).
    bad_lines = [n for n, (old, new) in enumerate(zip(second.splitlines(), changed.splitlines())) if old != new]
    if broken == "negative m/z":
        assert "-100.0" in message
    elif bad_lines:
        assert f"line {len(first.splitlines()) + 1 + bad_lines[0] + 1}," in message, message


def test_peaks_are_sorted_by_mz_on_reading(tmp_path):
    path = write_mgf(tmp_path / "a.mgf", [entry("x", "PEPK", peaks=[(300, 1), (100, 2), (200, 3)])])
    (s,) = read_mgf(path, VOCAB)
    assert s.mz.tolist() == [100, 200, 300] and s.intensity.tolist() == [2, 3, 1]


# ------------------------------------------------------------------ preprocessing
def spectrum(mz, intensity, precursor_mz=500.0, charge=2):
    return Spectrum(np.array(mz, float), np.array(intensity, float), precursor_mz, charge, None, None, "t")


def test_preprocessing_removes_range_precursor_and_weak_peaks():
    # Precursor 500 m/z at 2+: singly charged precursor at 999.0073 m/z.
    s = spectrum([40, 120, 499, 501.5, 600, 999.5, 1200, 2600], [9, 4, 9, 9, 100, 9, 0.5, 9])
    out = Preprocessing(min_intensity=0.01)(s)
    assert out.mz.tolist() == [120, 600]  # 1200 is below 1 % of the top peak
    np.testing.assert_allclose(out.intensity, [np.sqrt(4) / np.sqrt(100), 1.0])


def test_preprocessing_keeps_the_most_intense_in_mz_order_without_sqrt():
    s = spectrum([100, 200, 300, 400, 600], [5, 1, 4, 2, 3])
    out = Preprocessing(max_peaks=3, sqrt=False, remove_precursor_tol=0.0)(s)
    assert out.mz.tolist() == [100, 300, 600]
    np.testing.assert_allclose(out.intensity, [1.0, 0.8, 0.6])


def test_preprocessing_of_an_empty_spectrum_stays_empty():
    out = Preprocessing()(spectrum([1000.0], [1.0], precursor_mz=1000.0, charge=1))
    assert out.mz.size == 0 and out.intensity.size == 0


def test_preprocessing_many_at_once_keeps_each_spectrums_own_peaks(real_mgf):
    """Spectra filtered in padded chunks (Preprocessing.many) give each one the peaks it gets alone: rows of
    other lengths, charges and precursors, a spectrum without peaks and one left without any, do not reach it."""
    read = read_mgf(real_mgf, Vocabulary.default())
    odd = [spectrum([], []), spectrum([1000.0], [1.0], precursor_mz=1000.0, charge=1),
           spectrum([100, 200, 300, 400, 600], [5, 1, 4, 2, 3], charge=4)]
    spectra = odd[:1] + read[:40] + odd[1:] + read[40:80]
    preprocessing = Preprocessing(max_peaks=50)
    together = preprocessing.many(spectra, chunk=16)
    assert len(together) == len(spectra)
    for a, s in zip(together, spectra):
        alone = preprocessing(s)
        assert np.array_equal(a.mz, alone.mz) and np.array_equal(a.intensity, alone.intensity)
        assert (a.precursor_mz, a.charge, a.title) == (s.precursor_mz, s.charge, s.title)
    assert together[0].mz.size == 0 and together[41].mz.size == 0
    assert together[42].mz.tolist() == [100, 200, 300, 400, 600]  # no peak near the 4+ precursor's m/z values


# ------------------------------------------------------------------ collate
def test_collate_pads_masks_and_truncates_peaks_by_intensity():
    a = Spectrum(np.array([100.0, 200.0, 300.0]), np.array([0.1, 1.0, 0.5]), 400.0, 2, "PEK", VOCAB.encode("PEK"), "a")
    b = Spectrum(np.array([150.0]), np.array([1.0]), 300.0, 3, "GA", VOCAB.encode("GA"), "b")
    batch = collate([a, b], VOCAB, max_length=5, max_peaks=2)
    assert isinstance(batch, SpectrumBatch) and len(batch) == 2
    assert batch.mz.dtype == torch.float32 and batch.precursor_mz.dtype == torch.float64
    assert batch.charge.dtype == torch.int64 and batch.tokens.dtype == torch.int64
    assert batch.mz.tolist() == [[200.0, 300.0], [150.0, 0.0]]
    assert batch.peak_mask.tolist() == [[True, True], [True, False]]
    assert batch.tokens.tolist() == [VOCAB.encode("PEK") + [0, 0], VOCAB.encode("GA") + [0, 0, 0]]
    assert batch.mask.sum(1).tolist() == [3, 2]
    assert batch.charge.tolist() == [2, 3] and batch.precursor_mz.tolist() == [400.0, 300.0]
    moved = batch.to("cpu")
    assert moved.vocabulary is VOCAB and torch.equal(moved.tokens, batch.tokens)


def test_collate_rejects_long_annotations_and_foreign_indices():
    s = Spectrum(np.array([100.0]), np.array([1.0]), 400.0, 2, "PEPK", VOCAB.encode("PEPK"), "long")
    with pytest.raises(ValueError, match=r"TITLE=long.*max_length=3"):
        collate([s], VOCAB, max_length=3)
    small = Vocabulary.from_tokens("PEK")
    with pytest.raises(ValueError, match="outside the vocabulary"):
        collate([s], small)
    with pytest.raises(ValueError, match="at least one"):
        collate([], VOCAB)
