"""The ms2pip intensity cache and the simulator's use of it (ms2pip itself replaced by a fake:
the ``simulate`` extra is not installed in CI)."""

import builtins
import hashlib
import json

import numpy as np
import pytest
import torch

from peptide_losses import Vocabulary
from peptide_losses.constants import H2O, PROTON
from peptide_losses.spectra import Preprocessing
from peptide_losses.train import intensities
from peptide_losses.train.config import load_config
from peptide_losses.train.simulate import SpectrumSimulator, generator

PEPTIDES = ["PEPTIDEK", "LLGNVLVCVLAHHFGK", "ACDEFGHIKR"]


def fake_predictor(calls):
    """ms2pip's output format: log2(I + 0.001), b[k] / y[k] the ion of k + 1 residues.
    Intensity k + 1 for b[k] and 10 (k + 1) for y[k], times the charge."""
    def predict(items):
        calls.append(len(items))
        return [{"b": np.log2(z * np.arange(1.0, len(p)) + 0.001), "y": np.log2(10 * z * np.arange(1.0, len(p)) + 0.001)}
                for p, z in items]
    return lambda: predict


def test_table_holds_each_slot_s_b_ion_and_its_complementary_y_ion_normalised(tmp_path, monkeypatch):
    monkeypatch.setattr(intensities, "ms2pip_predictor", fake_predictor([]))
    table = intensities.load_intensities(PEPTIDES, [2, 3], 19, tmp_path).numpy().astype(np.float64)
    assert table.shape == (3, 3, 2, 19) and not table[:, 0].any()
    n = len(PEPTIDES[0])
    b, y = np.arange(1.0, n), 10 * np.arange(1.0, n)
    total = b.sum() + y.sum()
    # Slot l: b_{l+1} and y_{n-l-1}; the same pattern at both charges once normalised.
    for z in (2, 3):
        np.testing.assert_allclose(table[0, z - 1, 0, : n - 1], b / total, rtol=1e-3)
        np.testing.assert_allclose(table[0, z - 1, 1, : n - 1], y[::-1] / total, rtol=1e-3)
        assert not table[0, z - 1, :, n - 1 :].any()
    np.testing.assert_allclose(table[:, 1:].sum((2, 3)), 1.0, rtol=1e-2)


def test_cache_is_one_file_per_input_reproducible_and_read_back_without_predicting(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(intensities, "ms2pip_predictor", fake_predictor(calls))
    first = intensities.load_intensities(PEPTIDES, [2, 3], 19, tmp_path / "a")
    again = intensities.load_intensities(PEPTIDES, [2, 3], 19, tmp_path / "a")
    assert calls == [6] and torch.equal(first, again)
    intensities.load_intensities(PEPTIDES, [2, 3], 19, tmp_path / "b")
    files = [next((tmp_path / d).glob("*.npy")) for d in "ab"]
    assert files[0].name == files[1].name
    assert hashlib.sha256(files[0].read_bytes()).digest() == hashlib.sha256(files[1].read_bytes()).digest()
    # Another order, charge set or slot count is another file.
    intensities.load_intensities(PEPTIDES[::-1], [2, 3], 19, tmp_path / "a")
    intensities.load_intensities(PEPTIDES, [2], 19, tmp_path / "a")
    assert len(list((tmp_path / "a").glob("*.npy"))) == 3 and calls == [6, 6, 6, 3]


def test_a_peptide_ms2pip_cannot_take_is_an_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.setattr(intensities, "ms2pip_predictor", lambda: lambda items: [None] * len(items))
    with pytest.raises(ValueError, match="PEPTIDEK/2"):
        intensities.load_intensities(PEPTIDES, [2], 19, tmp_path)
    assert not list(tmp_path.glob("*"))


def test_missing_ms2pip_is_an_error_naming_the_extra(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ms2pip(name, *args, **kwargs):
        if name.startswith("ms2pip"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ms2pip)
    with pytest.raises(ImportError, match=r'\.\[simulate\]'):
        intensities.load_intensities(PEPTIDES, [2], 19, tmp_path)


def test_config_rejects_an_unknown_intensity_model(tmp_path):
    with pytest.raises(ValueError, match="simulation.train.intensities"):
        load_config(overrides={"simulation": {"train": {"intensities": "prosit"}}})


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_config_rejects_a_predicted_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match=r"simulation.easy.predicted_fraction must be in \[0, 1\]"):
        load_config(overrides={"simulation": {"easy": {"predicted_fraction": fraction}}})


def pattern_correlation(intensity_model, tmp_path, monkeypatch, predicted_fraction=1.0) -> float:
    """Mean over spectra of the Pearson correlation between log drawn and log fake-predicted
    intensities of the b/y ions found (no noise peaks, missing ions, a ions or losses)."""
    monkeypatch.setattr(intensities, "ms2pip_predictor", fake_predictor([]))
    monkeypatch.setenv("PEPTIDE_LOSSES_CACHE", str(tmp_path))
    settings = load_config(overrides={"simulation": {"train": {
        "intensities": intensity_model, "min_length": 7, "max_length": 18, "charge_weights": [0.0, 1.0],
        "noise_peaks": [0, 0], "missing_rate": [0.0, 0.0], "a_ion_rate": 0.0, "neutral_loss_rate": 0.0,
        "isotope_error_rate": 0.0, "predicted_fraction": predicted_fraction}}}).simulation.train
    vocabulary = Vocabulary.default()
    simulator = SpectrumSimulator(PEPTIDES, settings, vocabulary, Preprocessing(), 20)
    batch = simulator.sample(64, generator("cpu", 3))
    again = SpectrumSimulator(PEPTIDES, settings, vocabulary, Preprocessing(), 20).sample(64, generator("cpu", 3))
    assert torch.equal(again.intensity, batch.intensity)
    masses = vocabulary.mass_tensor()
    correlations = []
    for row in range(64):
        residues = masses[batch.tokens[row][batch.mask[row]]].numpy()
        n, prefix = len(residues), np.cumsum(residues)[:-1]
        ions = np.concatenate([prefix + PROTON, residues.sum() + H2O - prefix + PROTON])
        k = np.arange(1.0, n)
        expected = np.log(np.concatenate([k, 10 * k[::-1]]))
        keep = batch.peak_mask[row]
        mz, drawn = batch.mz[row][keep].double().numpy(), batch.intensity[row][keep].double().numpy()
        distance = np.abs(mz[None] - ions[:, None])
        found = distance.min(1) < 0.05
        correlations.append(np.corrcoef(np.log(drawn[distance.argmin(1)][found]), expected[found])[0, 1])
    return float(np.mean(correlations))


def test_simulator_draws_the_predicted_b_y_pattern(tmp_path, monkeypatch):
    predicted = pattern_correlation("ms2pip", tmp_path, monkeypatch)
    shape = pattern_correlation("shape", tmp_path, monkeypatch)
    assert predicted > 0.8 and predicted > shape + 0.2, (predicted, shape)


def test_a_predicted_fraction_mixes_the_two_patterns_per_spectrum(tmp_path, monkeypatch):
    """Half the spectra predicted: the mean correlation lies between the two models', and a
    fraction of 0 draws the shape model's pattern."""
    predicted = pattern_correlation("ms2pip", tmp_path, monkeypatch)
    shape = pattern_correlation("shape", tmp_path, monkeypatch)
    half = pattern_correlation("ms2pip", tmp_path, monkeypatch, predicted_fraction=0.5)
    none = pattern_correlation("ms2pip", tmp_path, monkeypatch, predicted_fraction=0.0)
    assert shape + 0.1 < half < predicted - 0.1, (shape, half, predicted)
    assert abs(none - shape) < 0.1, (none, shape)
