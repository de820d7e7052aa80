"""The package's intensity model (peptide_losses.intensity_model) and the judge's feature computed with it
for every candidate at once (predicted_intensity.model_correlations), against the row-by-row numpy
path that ms2pip's feature takes (predicted_intensity.correlations) fed by the same model."""

import numpy as np
import pytest
import torch

from peptide_losses import Vocabulary, intensity_model
from peptide_losses.datasets import real_set
from peptide_losses.predicted_intensity import correlations, model_correlations
from peptide_losses.spectra import Preprocessing, collate

VOCAB = Vocabulary.default()


def small_model(seed=0):
    torch.manual_seed(seed)
    return intensity_model.IntensityModel(width=16, layers=1, heads=2).eval()


def test_the_predictor_gives_one_b_and_one_y_share_per_cleavage_summing_to_one():
    predict = intensity_model.predictor(small_model())
    for (peptide, _), ions in zip([("PEPTIDEK", 2), ("LK", 3)], predict([("PEPTIDEK", 2), ("LK", 3)])):
        assert len(ions["b"]) == len(ions["y"]) == len(peptide) - 1
        total = np.clip(np.exp2(ions["b"]) - 0.001, 0, None).sum() + np.clip(np.exp2(ions["y"]) - 0.001, 0, None).sum()
        assert total == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match="'X' is none of"):
        intensity_model.encode(["PEXK"])


def test_the_batched_feature_equals_the_row_by_row_one():
    """Real Casanovo-sample spectra; per spectrum its truth, an N-terminally acetylated and oxidised
    variant, a one-residue row (no cleavage: 0), an invalid slot (0) and padding rows."""
    items = [s for _, s in real_set("casanovo-sample", VOCAB, Preprocessing())][:12]
    batch = collate(items, VOCAB)
    rows = []
    for s in items:
        truth = list(s.tokens)
        modified = [VOCAB.index("[Acetyl]-")] + [VOCAB.index("M[Oxidation]") if VOCAB.tokens[t] == "M" else t
                                                for t in truth]
        rows.append([truth, modified, [VOCAB.index("K")], truth[::-1], []])
    width = max(len(r) for spectrum in rows for r in spectrum)
    tokens = torch.tensor([[r + [0] * (width - len(r)) for r in spectrum] for spectrum in rows])
    valid = torch.ones(tokens.shape[:2], dtype=torch.bool)
    valid[:, 3] = False
    model = small_model(1)
    args = (tokens, valid, VOCAB, batch.mz, batch.intensity, batch.peak_mask, batch.charge)
    batched = model_correlations(*args, model=model)
    row_by_row = correlations(*args, predictor=intensity_model.predictor(model))
    torch.testing.assert_close(batched, row_by_row, atol=1e-5, rtol=0)
    assert (batched[:, 2:] == 0).all() and (batched[:, :2] != 0).any()


def test_weights_round_trip_without_pickle(tmp_path):
    model = small_model(2)
    path = tmp_path / "m.pt"
    intensity_model.save(model, path, {"device": torch.device("cpu"), "note": "test"})
    again = intensity_model.load(path)
    letters, charge = intensity_model.encode(["PEPTIDEK", "LLK"]), torch.tensor([2, 3])
    assert torch.equal(model(letters, charge), again(letters, charge))
    assert torch.load(path, weights_only=True)["record"]["device"] == "cpu"
