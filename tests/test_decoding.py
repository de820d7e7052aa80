"""The autoregressive model and its decoders: causal teacher forcing, greedy and precursor-aware beam search."""

import math

import pytest
import torch

from peptide_losses import Vocabulary
from peptide_losses.spectra import SpectrumBatch
from peptide_losses.train.config import load_config
from peptide_losses.train.data import SimulatedTraining
from peptide_losses.train.decoding import beam_search, greedy
from peptide_losses.train.transformer import PeptideTransformer

VOCAB = Vocabulary.default()


def tiny_transformer(max_length=12):
    c = load_config(overrides={"max_length": max_length, "model": {"dim": 32, "heads": 2, "ff_dim": 64,
                                                                   "encoder_layers": 1, "decoder_layers": 2}})
    torch.manual_seed(0)
    return PeptideTransformer(c.model, len(VOCAB), max_length).eval(), c


def test_teacher_forced_logits_are_causal_and_equal_step_by_step_decoding():
    model, c = tiny_transformer(max_length=20)
    batch = SimulatedTraining(load_config(overrides={"batch_size": 3}), VOCAB).batch(0)
    with torch.no_grad():
        (forced,) = model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge, batch.tokens)
        changed = batch.tokens.clone()
        changed[:, 5:] = 7
        (after,) = model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge, changed)
        memory, padding, start = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz,
                                              batch.charge)
        stepwise = torch.stack([model.decode(memory, padding, start, batch.tokens[:, :t])[:, -1] for t in range(8)], 1)
    assert forced.shape == (3, 20, len(VOCAB))
    # Position l sees tokens < l only: changing tokens from 5 on leaves positions 0..5 alone.
    assert torch.allclose(forced[:, :6], after[:, :6], atol=1e-5) and not torch.allclose(forced[:, 6:], after[:, 6:])
    assert torch.allclose(forced[:, :8], stepwise, atol=1e-5)


class ScriptedModel(torch.nn.Module):
    """An autoregressive stand-in whose next-token log-probabilities follow a table keyed by the prefix."""

    autoregressive = True

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], max_length: int) -> None:
        super().__init__()
        self.table, self.max_length = table, max_length

    def encode(self, mz, intensity, peak_mask, precursor_mz, charge):
        batch = mz.shape[0]
        return torch.zeros(batch, 1, 1), torch.zeros(batch, 1, dtype=torch.bool), torch.zeros(batch, 1, 1)

    def decode(self, memory, padding, start, prefix):
        out = torch.full((prefix.shape[0], prefix.shape[1] + 1, len(VOCAB)), -30.0)
        for row, tokens in enumerate(prefix.tolist()):
            for token, p in self.table.get(tuple(t for t in tokens if t), {0: 1.0}).items():
                out[row, -1, token] = math.log(p)
        return out


def one_spectrum(sequence: str) -> SpectrumBatch:
    """A batch of one spectrum (no peaks needed by the scripted model) whose precursor is ``sequence``'s at 2+."""
    return SpectrumBatch(
        mz=torch.zeros(1, 1), intensity=torch.zeros(1, 1), peak_mask=torch.ones(1, 1, dtype=torch.bool),
        precursor_mz=torch.tensor([VOCAB.precursor_mz(sequence, 2)], dtype=torch.float64),
        charge=torch.tensor([2]), tokens=torch.zeros(1, 6, dtype=torch.long), mask=torch.zeros(1, 6, dtype=torch.bool),
        vocabulary=VOCAB,
    )


def test_beam_search_demotes_candidates_outside_the_precursor_tolerance():
    g, a, s, k = (VOCAB.index(t) for t in "GASK")
    # Greedy takes G then A (0.6 x 0.9); the beam also keeps S, whose continuation K has the precursor's mass.
    table = {(): {g: 0.6, s: 0.4}, (g,): {a: 0.9, k: 0.1}, (s,): {k: 0.7, a: 0.3},
             (g, a): {0: 1.0}, (s, k): {0: 1.0}, (g, k): {0: 1.0}, (s, a): {0: 1.0}}
    model = ScriptedModel(table, max_length=6)
    batch = one_spectrum("SK")
    assert VOCAB.decode(greedy(model, batch)[0].tolist()) == "GA"
    assert VOCAB.decode(beam_search(model, batch, beam_size=3, tolerance_ppm=None)[0].tolist()) == "GA"
    assert VOCAB.decode(beam_search(model, batch, beam_size=3, tolerance_ppm=20.0)[0].tolist()) == "SK"
    # A beam of one is greedy: the precursor cannot help a candidate it never kept.
    assert VOCAB.decode(beam_search(model, batch, beam_size=1, tolerance_ppm=20.0)[0].tolist()) == "GA"


def test_beam_search_accepts_the_precursor_at_an_allowed_isotope_error():
    g, a, s, k = (VOCAB.index(t) for t in "GASK")
    table = {(): {g: 0.6, s: 0.4}, (g,): {a: 1.0}, (s,): {k: 1.0}, (g, a): {0: 1.0}, (s, k): {0: 1.0}}
    model = ScriptedModel(table, max_length=6)
    batch = one_spectrum("SK")
    batch.precursor_mz += 1.0033548378 / 2  # the +1 13C isotope was picked
    assert VOCAB.decode(beam_search(model, batch, 3, 20.0, isotope_errors=(0,))[0].tolist()) == "GA"
    assert VOCAB.decode(beam_search(model, batch, 3, 20.0, isotope_errors=(0, 1))[0].tolist()) == "SK"


def test_decoders_stop_at_the_stop_token_and_fill_padding_after_it():
    model, _ = tiny_transformer(max_length=20)
    batch = SimulatedTraining(load_config(overrides={"batch_size": 4}), VOCAB).batch(0)
    for tokens in (greedy(model, batch), beam_search(model, batch, 3, 20.0, (0, 1))):
        assert tokens.shape == (4, 20)
        for row in tokens.tolist():
            n = row.index(0) if 0 in row else len(row)
            assert all(t == 0 for t in row[n:])
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, batch, 0, None)
