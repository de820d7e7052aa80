"""The autoregressive model and its decoders: causal teacher forcing, greedy, the beam search and its
reranking by the precursor and the spectrum (:mod:`peptide_losses.decoding`)."""

import math

import pytest
import torch

from peptide_losses import Vocabulary, reference, spectrum_scores
from peptide_losses.decoding import beam_search, candidate_ppm, rerank, spectrum_guide
from peptide_losses.spectra import SpectrumBatch
from peptide_losses.train.config import load_config
from peptide_losses.train.data import SimulatedTraining
from peptide_losses.train.decoding import beam_candidates, beam_decodings, greedy
from peptide_losses.train.transformer import PeptideTransformer

VOCAB = Vocabulary.default()


def precursor_beam(model, batch, beam_size, tolerance_ppm, isotope_errors=(0,)):
    """(B, L) tokens of the precursor-aware beam (no demotion for tolerance None)."""
    candidates = beam_candidates(model, batch, beam_size)
    if tolerance_ppm is None:
        return rerank(candidates.tokens, candidates.mean_log_prob()).tokens
    ppm = candidate_ppm(candidates.tokens, VOCAB, batch.precursor_mz, batch.charge, isotope_errors)
    return rerank(candidates.tokens, candidates.mean_log_prob(), precursor_ppm=ppm, tolerance_ppm=tolerance_ppm).tokens


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


def test_the_cached_decoder_equals_decoding_the_whole_prefix_and_follows_reordered_rows():
    model, _ = tiny_transformer(max_length=20)
    batch = SimulatedTraining(load_config(overrides={"batch_size": 3}), VOCAB).batch(1)
    with torch.no_grad():
        encoded = model.encode(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
        decoder = model.cached_decoder(*encoded, repeats=2)
        memory, padding, start = (x.repeat_interleave(2, 0) for x in encoded)
        tokens = batch.tokens.repeat_interleave(2, 0)
        rows = torch.tensor([1, 0, 3, 2, 5, 4])
        for t in range(8):
            if t == 4:  # the beam swapped each spectrum's two rows: so do their tokens and cache
                tokens, memory, padding, start = tokens[rows], memory[rows], padding[rows], start[rows]
                tokens[:, 4:] = torch.arange(6)[:, None] + 3
                decoder.reorder(rows)
            full = model.decode(memory, padding, start, tokens[:, :t])[:, -1]
            torch.testing.assert_close(decoder(tokens[:, :t]), full, atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="cache holds 8 tokens"):
            decoder(tokens[:, :3])


class ScriptedModel(torch.nn.Module):
    """An autoregressive stand-in whose next-token log-probabilities follow a table keyed by the prefix."""

    autoregressive = True

    def __init__(self, table: dict[tuple[int, ...], dict[int, float]], max_length: int) -> None:
        super().__init__()
        self.table, self.max_length = table, max_length

    def encode(self, mz, intensity, peak_mask, precursor_mz, charge):
        batch = mz.shape[0]
        return torch.zeros(batch, 1, 1), torch.zeros(batch, 1, dtype=torch.bool), torch.zeros(batch, 1, 1)

    def cached_decoder(self, memory, padding, start, repeats=1):
        decode = lambda prefix: self.decode(None, None, None, prefix)[:, -1]  # noqa: E731
        decode.reorder = lambda rows: None
        return decode

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
    assert VOCAB.decode(precursor_beam(model, batch, beam_size=3, tolerance_ppm=None)[0].tolist()) == "GA"
    assert VOCAB.decode(precursor_beam(model, batch, beam_size=3, tolerance_ppm=20.0)[0].tolist()) == "SK"
    # A beam of one is greedy: the precursor cannot help a candidate it never kept.
    assert VOCAB.decode(precursor_beam(model, batch, beam_size=1, tolerance_ppm=20.0)[0].tolist()) == "GA"


def test_beam_search_accepts_the_precursor_at_an_allowed_isotope_error():
    g, a, s, k = (VOCAB.index(t) for t in "GASK")
    table = {(): {g: 0.6, s: 0.4}, (g,): {a: 1.0}, (s,): {k: 1.0}, (g, a): {0: 1.0}, (s, k): {0: 1.0}}
    model = ScriptedModel(table, max_length=6)
    batch = one_spectrum("SK")
    batch.precursor_mz += 1.0033548378 / 2  # the +1 13C isotope was picked
    assert VOCAB.decode(precursor_beam(model, batch, 3, 20.0, isotope_errors=(0,))[0].tolist()) == "GA"
    assert VOCAB.decode(precursor_beam(model, batch, 3, 20.0, isotope_errors=(0, 1))[0].tolist()) == "SK"


def test_decoders_stop_at_the_stop_token_and_fill_padding_after_it():
    model, _ = tiny_transformer(max_length=20)
    batch = SimulatedTraining(load_config(overrides={"batch_size": 4}), VOCAB).batch(0)
    config = load_config(overrides={"decoding": {"beam_size": 3}})
    for tokens in (greedy(model, batch), *beam_decodings(model, batch, config.decoding, (0, 1)).values()):
        assert tokens.shape == (4, 20)
        for row in tokens.tolist():
            n = row.index(0) if 0 in row else len(row)
            assert all(t == 0 for t in row[n:])
    with pytest.raises(ValueError, match="beam_size"):
        beam_candidates(model, batch, 0)


def scripted_beam():
    """The GA / SK beam of the scripted model above, with the precursor of SK."""
    g, a, s, k = (VOCAB.index(t) for t in "GASK")
    table = {(): {g: 0.6, s: 0.4}, (g,): {a: 0.9, k: 0.1}, (s,): {k: 0.7, a: 0.3},
             (g, a): {0: 1.0}, (s, k): {0: 1.0}, (g, k): {0: 1.0}, (s, a): {0: 1.0}}
    return ScriptedModel(table, max_length=6), one_spectrum("SK")


def test_the_beam_keeps_all_candidates_with_their_summed_log_probabilities():
    model, batch = scripted_beam()
    candidates = beam_candidates(model, batch, 3)
    assert candidates.tokens.shape == (1, 3, 6)
    names = [VOCAB.decode(row.tolist()) for row in candidates.tokens[0]]
    assert names == ["GA", "SK", "SA"]  # 0.54, 0.28, 0.12: best first
    assert candidates.log_prob[0].tolist() == pytest.approx([math.log(0.54), math.log(0.28), math.log(0.12)], abs=1e-5)
    assert candidates.finished.all()
    # Casanovo's ranking: per token, the stop token counted.
    assert candidates.mean_log_prob()[0, 0].item() == pytest.approx(math.log(0.54) / 3, abs=1e-6)


def test_weight_zero_reproduces_the_precursor_beams_choice_exactly():
    model, _ = tiny_transformer(max_length=20)
    batch = SimulatedTraining(load_config(overrides={"batch_size": 6}), VOCAB).batch(3)
    candidates = beam_candidates(model, batch, 4)
    ppm = candidate_ppm(candidates.tokens, VOCAB, batch.precursor_mz, batch.charge, (0, 1))
    scores = spectrum_scores(candidates.tokens, batch.mz, batch.intensity, masses=VOCAB, peak_mask=batch.peak_mask)
    model_scores = candidates.mean_log_prob()
    plain = rerank(candidates.tokens, model_scores, precursor_ppm=ppm)
    assert torch.equal(rerank(candidates.tokens, model_scores, precursor_ppm=ppm, spectrum_scores=scores,
                              weight=0.0).index, plain.index)
    # The precursor demotion is Casanovo's: mean log-prob minus 1 outside the tolerance.
    expected = (candidates.mean_log_prob() - (ppm > 20.0).float()).argmax(1)
    assert torch.equal(plain.index, expected)
    with pytest.raises(ValueError, match="spectrum_scores"):
        rerank(candidates.tokens, model_scores, weight=1.0)
    with pytest.raises(ValueError, match=r"spectrum_scores must have shape \(B, K\)"):
        rerank(candidates.tokens, model_scores, spectrum_scores=scores[:, :2], weight=1.0)
    with pytest.raises(ValueError, match="model_scores"):
        rerank(candidates.tokens, model_scores[:, :1])


def singly_charged_ions(sequence: str) -> torch.Tensor:
    """(1, N) the sorted b and y ions (1+) of ``sequence``: a spectrum it explains perfectly."""
    masses = torch.tensor([VOCAB.residue_masses(sequence)], dtype=torch.float64)
    mz, valid = reference.fragment_mz(masses, torch.ones_like(masses, dtype=torch.bool), ("b", "y"), (1,))
    return mz[valid].sort().values[None].float()


def test_the_spectrum_chooses_the_candidate_whose_ions_are_observed():
    # Two candidates of one mass, the model preferring the wrong one; the spectrum is the other's b/y ions.
    right, wrong = "PEPTIDEK", "EPPTIDEK"
    tokens = torch.tensor([[VOCAB.encode(wrong), VOCAB.encode(right)]])
    mz = singly_charged_ions(right)
    model_scores = torch.tensor([[-0.1, -0.15]])
    scores = spectrum_scores(tokens, mz, torch.ones_like(mz), masses=VOCAB)
    assert scores[0, 1] < scores[0, 0]
    assert rerank(tokens, model_scores).index.item() == 0
    assert rerank(tokens, model_scores, spectrum_scores=scores, weight=100.0).index.item() == 1


def test_the_spectrum_guide_rewards_the_residue_whose_ions_are_observed():
    sequence = "PEPTIDEK"
    mz = singly_charged_ions(sequence)
    precursor = torch.tensor([VOCAB.precursor_mz(sequence, 2)], dtype=torch.float64)
    guide = spectrum_guide(mz, torch.ones_like(mz), torch.ones_like(mz, dtype=torch.bool), precursor,
                           torch.tensor([2]), VOCAB.mass_tensor(), beam_size=1, weight=1.0)
    bonus = guide(torch.tensor([VOCAB.encode("PEP")]))[0]
    assert bonus[0] == 0  # stopping earns nothing
    # T after PEP puts b4 and y4 on peaks: the largest bonus, 2 (a hit each).
    assert bonus.argmax().item() == VOCAB.index("T") and bonus.max().item() == pytest.approx(2.0, abs=0.05)
    assert bonus[VOCAB.index("W")] < 0.5
    # A guide changes which candidates the beam keeps, never their log-probability: the model's.
    g, a = VOCAB.index("G"), VOCAB.index("A")
    model = lambda prefix: torch.where(torch.arange(len(VOCAB)) == g, 0.0, -5.0).expand(prefix.shape[0], -1)  # noqa: E731
    likes_a = lambda prefix: torch.where(torch.arange(len(VOCAB)) == a, 10.0, 0.0).expand(prefix.shape[0], -1)  # noqa: E731
    guided, plain = beam_search(model, 1, 3, 2, guide=likes_a), beam_search(model, 1, 3, 2)
    assert VOCAB.decode(plain.tokens[0, 0].tolist()) == "GGG" and VOCAB.decode(guided.tokens[0, 0].tolist()) == "AAA"
    normaliser = math.log(1 + (len(VOCAB) - 1) * math.exp(-5.0))
    for found in (guided, plain):
        for row, log_prob in zip(found.tokens[0].tolist(), found.log_prob[0].tolist()):
            want = sum((0.0 if t == g else -5.0) - normaliser for t in row)
            assert log_prob == pytest.approx(want, abs=1e-5)


def test_an_n_terminal_modification_is_never_proposed_after_position_0():
    """A model that ranks [Acetyl]- first at every step: the beam (plain and start_only) and greedy may
    open a peptide with it, but no candidate holds an N-terminal token after position 0."""
    n_terminal = VOCAB.start_only_mask()
    acetyl = VOCAB.index("[Acetyl]-")

    def loves_acetyl(prefix):
        logits = torch.zeros(prefix.shape[0], len(VOCAB))
        logits[:, acetyl] = 5.0
        logits[:, VOCAB.index("A")] = 4.0
        logits[:, 0] = 3.0 if prefix.shape[1] >= 4 else -9.0
        return logits

    plain = beam_search(loves_acetyl, 2, 6, 3)
    assert n_terminal[plain.tokens[..., 1:]].any()  # the unconstrained search does write them mid-peptide
    found = beam_search(loves_acetyl, 2, 6, 3, start_only=n_terminal)
    assert not n_terminal[found.tokens[..., 1:]].any()
    assert (found.tokens[:, 0, 0] == acetyl).all() and found.finished[:, 0].all()  # the best opens with it
    with pytest.raises(ValueError, match=r"start_only must be a \(V,\) = \(29,\) bool tensor"):
        beam_search(loves_acetyl, 2, 6, 3, start_only=n_terminal[:-1])


def test_greedy_and_beam_of_a_model_write_n_terminal_tokens_at_position_0_only():
    model, _ = tiny_transformer(max_length=20)
    with torch.no_grad():  # the output bias of every N-terminal token far above the rest
        model.head.bias[VOCAB.start_only_mask()] += 50.0
    batch = SimulatedTraining(load_config(overrides={"batch_size": 3}), VOCAB).batch(0)
    n_terminal = VOCAB.start_only_mask()
    for tokens in (greedy(model, batch), beam_candidates(model, batch, 3).tokens):
        assert n_terminal[tokens[..., 0]].all() and not n_terminal[tokens[..., 1:]].any()


def stopping_model(vocab=6, seed=0):
    """``prefix -> logits``: random per (position, last token), the stop token's logit rising with the
    prefix's length, so candidates stop at different steps; counts its calls."""
    table = torch.randn(32, vocab, vocab, generator=torch.Generator().manual_seed(seed))
    calls = []

    def next_logits(prefix):
        calls.append(prefix.shape[1])
        t = prefix.shape[1]
        last = prefix[:, -1] if t else torch.zeros(len(prefix), dtype=torch.long)
        logits = table[t][last].clone()
        logits[:, 0] += 0.9 * t - 4.0
        return logits

    return next_logits, calls


@pytest.mark.parametrize("every", [2, 3, 7, None])
def test_asking_less_often_whether_the_beam_stopped_changes_no_candidate(every):
    model, calls = stopping_model()
    plain = beam_search(model, 4, 30, 5)
    steps_plain = len(calls)
    calls.clear()
    fewer = beam_search(model, 4, 30, 5, stop_check_every=every)
    assert steps_plain < 30 and plain.finished.all()  # the plain search ended early: the case at stake
    expected_steps = 30 if every is None else min(30, -(-steps_plain // every) * every)
    assert len(calls) == expected_steps
    assert torch.equal(fewer.tokens, plain.tokens) and torch.equal(fewer.finished, plain.finished)
    assert torch.allclose(fewer.log_prob, plain.log_prob)


def test_stop_check_every_must_be_a_positive_integer():
    model, _ = stopping_model()
    with pytest.raises(ValueError, match="stop_check_every"):
        beam_search(model, 1, 5, 2, stop_check_every=0)
