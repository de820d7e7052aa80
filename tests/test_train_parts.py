"""The trainer's parts: config, simulation, metrics, schedule, objective, checkpoints."""

import json
import os
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

import peptide_losses as pl
from peptide_losses import Vocabulary
from peptide_losses.constants import C13_C12
from peptide_losses.reference import fragment_mz
from peptide_losses.spectra import Preprocessing, collate
from peptide_losses.recommended import RECOMMENDED
from peptide_losses.train.checkpoint import atomic_save
from peptide_losses.train.config import load_config
from peptide_losses.train.data import MGFTraining, SimulatedTraining
from peptide_losses.train.metrics import aa_metrics, ppm_errors, residue_matches, token_metrics
from peptide_losses.train import plots
from peptide_losses.train.objective import Objective, shares
from peptide_losses.train.schedule import Balancer, learning_rate, staged_weights
from peptide_losses.train.simulate import SpectrumSimulator, generator, split_peptides, tryptic_peptides
from peptide_losses.train.summary import summary_table

VOCAB = Vocabulary.default()


def config(**overrides):
    return load_config(overrides={"backend": "reference", **overrides})


# ------------------------------------------------------------------ config
def test_config_rejects_unknown_keys_and_wrong_types_by_path(tmp_path):
    with pytest.raises(ValueError, match=r"losses\.spectrum\.distance_scal\b"):
        config(losses={"spectrum": {"distance_scal": 0.1}})
    with pytest.raises(ValueError, match=r"model\.dim must be of type int"):
        config(model={"dim": "big"})
    with pytest.raises(ValueError, match="multiple of model.heads"):
        config(model={"dim": 30, "heads": 4})
    with pytest.raises(ValueError, match="equally long"):
        config(schedule={"spectrum_weights": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        load_config(tmp_path / "settings.yaml")


def test_config_file_overrides_only_what_it_names(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text('steps = 77\n[losses.spectrum]\ndistance_scale = 0.05\n')
    c = load_config(toml)
    default = load_config()
    assert c.steps == 77 and c.losses.spectrum.distance_scale == 0.05
    assert c.losses.spectrum.charges == default.losses.spectrum.charges and c.model == default.model
    plain_da = tmp_path / "plain.json"
    plain_da.write_text(json.dumps({"losses": {"spectrum": {"distance_scale": None}}}))
    assert load_config(plain_da).losses.spectrum.distance_scale is None


def test_default_config_follows_the_evidence():
    """Mass-loss weights 0 (README, "Do the mass losses help?"; the recommendation every integration
    shares) and the spectrum loss's best-separating distance scale, the package default."""
    c = load_config()
    assert set(c.schedule.spectrum_weights) == {0.0} and set(c.schedule.precursor_weights) == {0.0}
    assert c.schedule.ce_weight == 1.0 and not c.balancing.enabled
    assert RECOMMENDED.spectrum_weight == RECOMMENDED.precursor_weight == 0.0
    assert c.losses.spectrum.distance_scale == RECOMMENDED.distance_scale == pl.reference.AUTO_DISTANCE_SCALE["da"]
    assert c.losses.spectrum.distance == "da" and c.losses.spectrum.direction == "observed"
    assert c.losses.spectrum.charges == [1, 2]


# ------------------------------------------------------------------ simulation
PROTEINS = 150


def simulator(peptides, settings, max_length=20):
    return SpectrumSimulator(peptides, settings, VOCAB, Preprocessing(), max_length)


def test_peptides_are_tryptic_and_validation_peptides_are_never_trained_on():
    peptides = tryptic_peptides(PROTEINS)
    assert len(peptides) > 1000
    assert all(7 <= len(p) <= 18 and set(p) <= set("GASPVTCLINDQKEMHFRYW") for p in peptides)
    # All but protein C-termini end after K or R.
    assert np.mean([p[-1] in "KR" for p in peptides]) > 0.95
    train, valid = split_peptides(0.1, PROTEINS)
    assert not set(train) & set(valid)
    assert 0.05 < len(valid) / len(peptides) < 0.15
    # A larger proteome holds the smaller one's proteins, so its peptides too.
    assert set(peptides) <= set(tryptic_peptides(2 * PROTEINS))


def test_no_peptide_of_a_real_evaluation_set_is_ever_a_training_peptide(monkeypatch):
    """A proteome that holds real evaluation peptides (one as written, one with I for L): neither trains."""
    from peptide_losses.datasets import REAL_SETS, evaluation_peptides, real_set
    from peptide_losses.train import simulate

    sample = [s.sequence for _, s in real_set("massivekb-test", VOCAB)[:2]]
    plain = [re.sub(r"\[[^\]]*\]-?", "", seq) for seq in sample]
    twin = plain[1].replace("L", "I")
    monkeypatch.setattr(simulate, "tryptic_peptides", lambda n: ("PEPTIDEK", plain[0], twin, "AAAAAAAK"))
    monkeypatch.setattr(simulate, "is_validation_peptide", lambda peptide, fraction: False)
    train, _ = simulate.split_peptides(0.1, PROTEINS)
    assert train == ["PEPTIDEK", "AAAAAAAK"]
    assert len(evaluation_peptides()) >= 600 and set(REAL_SETS) >= {"casanovo-sample", "massivekb-test"}


def test_the_human_pool_is_the_shipped_proteometools_list_and_leaves_every_evaluation_peptide_out(monkeypatch):
    import gzip

    from peptide_losses.datasets import evaluation_peptides, peptide_key
    from peptide_losses.train import simulate

    with gzip.open(simulate.HUMAN_PEPTIDES, "rt") as handle:
        lines = handle.read().split()
    pool = simulate.peptide_pool("human", PROTEINS)
    assert len(pool) == len(set(lines)) == 98_190  # the count its source (shared/README.md) gives
    assert list(pool) == sorted(pool) and all(7 <= len(p) <= 40 and set(p) <= set("GASPVTCLINDQKEMHFRYW") for p in pool)
    train, valid = split_peptides(0.1, PROTEINS, "human")
    assert not set(train) & set(valid) and 0.08 < len(valid) / len(pool) < 0.12
    assert not {peptide_key(p) for p in train} & evaluation_peptides()
    # An evaluation peptide slipped into the list is still never trained on.
    held_out = sorted(evaluation_peptides())[0]
    monkeypatch.setattr(simulate, "human_peptides", lambda: ("PEPTIDEK", held_out))
    monkeypatch.setattr(simulate, "is_validation_peptide", lambda peptide, fraction: False)
    assert simulate.split_peptides(0.1, PROTEINS, "human")[0] == ["PEPTIDEK"]
    with pytest.raises(ValueError, match="simulation.peptides must be 'synthetic' or 'human'"):
        simulate.peptide_pool("mouse", PROTEINS)


def test_config_rejects_an_unknown_peptide_pool():
    with pytest.raises(ValueError, match=r"simulation.peptides must be one of \('synthetic', 'human'\), got 'mouse'"):
        load_config(overrides={"simulation": {"peptides": "mouse"}})


def test_every_model_kind_a_config_accepts_builds_a_model_and_no_other_is_accepted():
    """The config checks ``model.kind`` against names (it cannot import the models: they import it);
    each name must build its class, and the trainer's table must hold no name the config rejects."""
    from peptide_losses.train.config import MODEL_KINDS
    from peptide_losses.train.models import MODELS

    assert set(MODELS) == set(MODEL_KINDS)
    for kind in MODEL_KINDS:
        c = load_config(overrides={"model": {"kind": kind}})
        model = MODELS[c.model.kind](c.model, 8, c.max_length)
        assert model.autoregressive == (kind == "transformer")
    with pytest.raises(ValueError, match=r"model.kind must be one of \('transformer', 'recursive'\), got 'lstm'"):
        load_config(overrides={"model": {"kind": "lstm"}})


def test_simulation_is_deterministic_and_consistent_with_its_annotation():
    c = config()
    train, _ = split_peptides(0.1, PROTEINS)
    sim = simulator(train, c.simulation.easy)
    a, b = sim.sample(16, generator("cpu", 5)), sim.sample(16, generator("cpu", 5))
    for name in ("tokens", "mz", "intensity", "peak_mask", "precursor_mz", "charge"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.tokens, sim.sample(16, generator("cpu", 6)).tokens)
    assert a.mz.dtype == torch.float32 and a.precursor_mz.dtype == torch.float64 and a.tokens.shape == (16, 20)
    for row in range(16):
        tokens = a.tokens[row][a.mask[row]].tolist()
        sequence = VOCAB.decode(tokens)
        assert sequence.replace("C[Carbamidomethyl]", "").count("C") == 0 and len(sequence) >= 7
        charge = int(a.charge[row])
        ppm = abs(VOCAB.precursor_mz(tokens, charge) - float(a.precursor_mz[row])) / float(a.precursor_mz[row]) * 1e6
        assert ppm < 6 * c.simulation.easy.precursor_jitter_ppm
        n = int(a.peak_mask[row].sum())
        # Real peaks first, ascending in m/z, the most intense scaled to 1; padding after them.
        assert a.peak_mask[row, :n].all() and not a.peak_mask[row, n:].any() and 0 < n <= 150
        assert torch.all(a.mz[row, 1:n] >= a.mz[row, : n - 1]) and (a.mz[row, n:] == 0).all()
        assert float(a.intensity[row, :n].max()) == pytest.approx(1.0)


def test_simulating_given_peptides_and_charges_changes_nothing_else():
    """``sample(pick=, charge=)`` writes exactly those peptides at those charges; with the charges a
    batch drew itself, the batch is that batch (the replaced draws are still made)."""
    c = config()
    train, _ = split_peptides(0.1, PROTEINS)
    sim = simulator(train, c.simulation.easy)
    drawn = sim.sample(8, generator("cpu", 5))
    again = sim.sample(8, generator("cpu", 5), charge=drawn.charge)
    for name in ("tokens", "mz", "intensity", "peak_mask", "precursor_mz", "charge"):
        assert torch.equal(getattr(drawn, name), getattr(again, name)), name
    pick, charge = torch.tensor([3, 1, 4, 1]), torch.tensor([2, 3, 4, 1])
    given = sim.sample(4, generator("cpu", 5), pick=pick, charge=charge)
    assert given.charge.tolist() == charge.tolist()
    plain = [VOCAB.decode(row[row != 0].tolist()).replace("[Oxidation]", "").replace("[Carbamidomethyl]", "")
             for row in given.tokens]
    assert plain == [[p for p in train if c.simulation.easy.min_length <= len(p) <= c.simulation.easy.max_length][i]
                     for i in pick.tolist()]


@pytest.mark.parametrize("name", ["internal_rate", "immonium_rate", "a_ion_rate", "oxidation_rate"])
def test_a_simulation_rate_outside_0_1_is_refused_by_name(name):
    with pytest.raises(ValueError, match=rf"simulation.hard.{name} must be in \[0, 1\], got 1.5"):
        config(simulation={"hard": {name: 1.5}})


def test_internal_fragments_and_immonium_ions_appear_at_the_rates_asked():
    """Without noise, missing fragments or jitter: of the internal fragments (2-4 residues, neither
    terminus; m/z from the vocabulary's masses + a proton, computed here) about ``internal_rate``
    have a peak, and every immonium ion inside the m/z window does; rate 0 adds none."""
    c = config()
    train, _ = split_peptides(0.1, PROTEINS)
    quiet = replace(c.simulation.easy, noise_peaks=[0, 0], missing_rate=[0.0, 0.0], mz_jitter_ppm=0.0,
                    internal_rate=0.5, immonium_rate=1.0)
    keep_all = Preprocessing(min_intensity=0.0, max_peaks=1000)
    with_extras = SpectrumSimulator(train, quiet, VOCAB, keep_all, 20).sample(64, generator("cpu", 3))
    without = SpectrumSimulator(train, replace(quiet, internal_rate=0.0, immonium_rate=0.0), VOCAB, keep_all,
                                20).sample(64, generator("cpu", 3))
    proton, co = 1.007276467, 27.994915
    found = {"internal": [], "immonium": []}
    for row in range(64):
        masses = VOCAB.mass_tensor()[with_extras.tokens[row][with_extras.mask[row]]].tolist()
        peaks = with_extras.mz[row][with_extras.peak_mask[row]].double().numpy()
        near = lambda m: bool((np.abs(peaks - m) < 0.01).any())  # noqa: E731
        n = len(masses)
        found["internal"] += [near(sum(masses[i:i + span]) + proton) for span in (2, 3, 4)
                              for i in range(1, n - span)]
        found["immonium"] += [near(m - co + proton) for m in masses if 50 <= m - co + proton <= 2500]
    assert 0.4 < np.mean(found["internal"]) < 0.65
    assert np.mean(found["immonium"]) == 1.0
    assert (with_extras.peak_mask.sum(1) > without.peak_mask.sum(1)).all()


def intensity_on_fragments(batch, tolerance=0.05):
    """Per spectrum, the share of its intensity within ``tolerance`` Da of a b/y ion of its annotation."""
    out = []
    for row in range(len(batch)):
        residue = VOCAB.mass_tensor()[batch.tokens[row][batch.mask[row]]][None]
        ions, valid = fragment_mz(residue, torch.ones_like(residue, dtype=torch.bool), ("b", "y"), (1, 2))
        ions = ions[valid].numpy()
        keep = batch.peak_mask[row]
        mz, intensity = batch.mz[row][keep].double().numpy(), batch.intensity[row][keep].double().numpy()
        near = np.abs(mz[:, None] - ions[None, :]).min(1) < tolerance
        out.append(intensity[near].sum() / intensity.sum())
    return np.array(out)


def test_simulated_peaks_sit_on_the_annotated_fragments():
    c = config()
    _, valid = split_peptides(0.1, PROTEINS)
    easy = simulator(valid, c.simulation.easy).sample(32, generator("cpu", 0))
    hard = simulator(valid, c.simulation.hard).sample(32, generator("cpu", 0))
    on_easy, on_hard = intensity_on_fragments(easy), intensity_on_fragments(hard)
    assert np.median(on_easy) > 0.7
    # The hard split adds noise peaks, a ions and neutral losses and drops more fragments.
    assert np.median(on_hard) < np.median(on_easy) - 0.1


def test_simulation_draws_the_split_s_charges_and_isotope_errors():
    c = config()
    settings = replace(c.simulation.hard, charge_weights=[0.0, 0.0, 1.0], isotope_error_rate=1.0, precursor_jitter_ppm=0.0)
    batch = simulator(split_peptides(0.1, PROTEINS)[1], settings).sample(8, generator("cpu", 1))
    assert (batch.charge == 3).all()
    for row in range(8):
        tokens = batch.tokens[row][batch.mask[row]].tolist()
        shift = (float(batch.precursor_mz[row]) - VOCAB.precursor_mz(tokens, 3)) * 3
        assert shift == pytest.approx(C13_C12, abs=1e-6)


def test_training_batches_depend_only_on_seed_step_and_rank(real_mgf):
    c = config(batch_size=8)
    sim = SimulatedTraining(c, VOCAB)
    assert torch.equal(sim.batch(3).tokens, sim.batch(3).tokens)
    assert not torch.equal(sim.batch(3).tokens, sim.batch(4).tokens)
    assert not torch.equal(sim.batch(3, rank=0, world=2).tokens, sim.batch(3, rank=1, world=2).tokens)
    real = MGFTraining(c, VOCAB, real_mgf)
    assert len(real.spectra) == 128
    # One epoch of 16 batches of 8 visits every spectrum once.
    seen = [tuple(t.tolist()) for step in range(16) for t in real.batch(step).tokens]
    assert sorted(seen) == sorted(tuple(t.tolist()) for t in collate(real.spectra, VOCAB, max_length=c.max_length).tokens)


# ------------------------------------------------------------------ metrics
def masses(sequence):
    return VOCAB.residue_masses(sequence)


def test_residue_matches_follow_casanovo_prefix_suffix_rules():
    assert residue_matches(masses("PEPTIDEK"), masses("PEPTIDEK")).all()
    assert residue_matches(masses("PEPTLDEK"), masses("PEPTIDEK")).all()  # I and L weigh the same
    # GG weighs what N weighs: the prefix scan pairs GG with N and fails them; K matches.
    assert residue_matches(masses("PEPGGK"), masses("PEPNK")).tolist() == [True, True, True, False, False, True]
    # A first-residue error shifts every prefix: only the suffix scan recovers the rest.
    assert residue_matches(masses("AEPTIDEK"), masses("PEPTIDEK")).tolist() == [False] + [True] * 7
    assert residue_matches([], masses("PEK")).tolist() == [False] * 3


def tokens(*peptides, length=10):
    rows = [VOCAB.encode(p) + [0] * (length - len(VOCAB.encode(p))) for p in peptides]
    return torch.tensor(rows)


def test_aa_metrics_count_precision_recall_and_peptides():
    true = tokens("PEPNK", "PEPTIDEK", "ACDK")
    pred = tokens("PEPGGK", "PEPTLDEK", "")
    m = aa_metrics(pred, true, VOCAB.mass_tensor())
    # Matched residues: 4 + 8 + 0; predicted 6 + 8 + 0; true 5 + 8 + 4; one peptide of three right.
    assert m["aa_precision"] == pytest.approx(12 / 14)
    assert m["aa_recall"] == pytest.approx(12 / 17)
    assert m["peptide_recall"] == pytest.approx(1 / 3)


def test_token_metrics_and_ppm_of_the_true_peptide():
    true = tokens("PEPTIDEK", "ACDK")
    pred = tokens("PEPTIDEK", "ACEK")
    m = token_metrics(pred, true, true != 0, VOCAB.mass_tensor())
    assert m["token_accuracy"] == pytest.approx(11 / 12) and m["sequence_accuracy"] == 0.5
    # No spectrum tells I from L: isobaric tokens count as the same residue; K and Q (36 mDa apart) do not.
    isobaric = token_metrics(tokens("PEPTLDEK", "ACDQ"), true, true != 0, VOCAB.mass_tensor())
    assert isobaric["token_accuracy"] == pytest.approx(11 / 12) and isobaric["sequence_accuracy"] == 0.5
    charge = torch.tensor([2, 3])
    precursor = torch.tensor([VOCAB.precursor_mz("PEPTIDEK", 2), VOCAB.precursor_mz("ACDK", 3)], dtype=torch.float64)
    ppm = ppm_errors(pred, VOCAB.mass_tensor(), precursor, charge)
    assert ppm[0] < 1e-6
    expected = abs(VOCAB.precursor_mz("ACEK", 3) - precursor[1].item()) / precursor[1].item() * 1e6
    assert ppm[1].item() == pytest.approx(expected, rel=1e-9)
    shifted = precursor + C13_C12 / charge.double()
    assert ppm_errors(pred, VOCAB.mass_tensor(), shifted, charge, (0, 1))[0] < 1e-6


# ------------------------------------------------------------------ schedule
SEED_SCHEDULE = {"spectrum_weights": [0, .05, .08, .10, .12, .13, .14, .14, .15, .15],
                 "precursor_weights": [0, .01, .02, .03, .04, .05, .06, .07, .08, .10]}


def test_staged_weights_cover_equal_tenths_of_the_run():
    c = config(schedule=SEED_SCHEDULE)
    weights = [staged_weights(c.schedule, step, 100) for step in range(100)]
    assert [w["spectrum"] for w in weights[::10]] == c.schedule.spectrum_weights
    assert [w["precursor"] for w in weights[9::10]] == c.schedule.precursor_weights
    assert all(w["ce"] == 1.0 for w in weights)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    opt = config().optimizer
    lrs = [learning_rate(opt, s, 1000) for s in range(1000)]
    assert lrs[0] < lrs[opt.warmup_steps - 1] == pytest.approx(opt.lr)
    assert all(a >= b for a, b in zip(lrs[opt.warmup_steps:], lrs[opt.warmup_steps + 1:]))
    assert lrs[-1] == pytest.approx(opt.lr * opt.min_lr_fraction, rel=1e-3)


def test_balancer_moves_shares_into_their_bands_only_when_enabled():
    values = {"ce": 1.0, "spectrum": 0.01, "precursor": 500.0}
    staged = {"ce": 1.0, "spectrum": 0.1, "precursor": 0.1}
    off = Balancer(config(balancing={"enabled": False}).balancing)
    for _ in range(50):
        off.update(values, off.weights(staged))
    assert off.factors == {"spectrum": 1.0, "precursor": 1.0}
    on = Balancer(config(balancing={"enabled": True, "rate": 0.1}).balancing)
    for _ in range(2000):
        on.update(values, on.weights(staged))
    final = shares(values, on.weights(staged))
    # Within one rate step of each band (the factors move by 10 % a step).
    assert 0.1 - 0.02 <= final["spectrum"] <= 0.2 + 0.02 and 0.1 - 0.02 <= final["precursor"] <= 0.3 + 0.02
    assert 0.6 - 0.02 <= final["ce"] <= 0.7 + 0.02
    assert sum(final.values()) == pytest.approx(1.0)


# ------------------------------------------------------------------ objective
def test_objective_rejects_a_batch_of_another_vocabulary():
    c = config()
    objective = Objective(VOCAB, c.losses, backend="reference")
    other = Vocabulary.from_tokens([t for t in VOCAB.tokens[1:] if t != "M[Oxidation]"] + ["M[+15.995]"])
    batch = SimulatedTraining(c, VOCAB).batch(0)
    logits = [torch.zeros(len(batch), c.max_length, len(VOCAB))]
    objective(logits, batch)  # the matching vocabulary passes
    batch.vocabulary = other
    with pytest.raises(ValueError, match=f"fingerprint {other.fingerprint}.*fingerprint {VOCAB.fingerprint}"):
        objective(logits, batch)


@pytest.mark.parametrize("positions", ["target", "all"])
def test_objective_uses_the_public_losses_on_the_final_cycle(positions):
    c = config(batch_size=4, losses={"positions": positions})
    objective = Objective(VOCAB, c.losses, backend="reference")
    batch = SimulatedTraining(c, VOCAB).batch(0)
    first, final = torch.randn(2, 4, c.max_length, len(VOCAB), generator=torch.Generator().manual_seed(0))
    terms = objective([first, final], batch)
    if positions == "target":  # residue tokens only, at the annotated positions
        logits, masses, mask = final[..., 1:], VOCAB.mass_tensor()[1:], batch.mask
    else:
        logits, masses, mask = final, VOCAB.mass_tensor(), None
    spec, prec = c.losses.spectrum, c.losses.precursor
    expected_spectrum = pl.spectrum_matching_loss(
        logits, batch.mz, batch.intensity, masses=masses, mask=mask, peak_mask=batch.peak_mask,
        ion_types=spec.ion_types, charges=spec.charges, distance_scale=spec.distance_scale, backend="reference")
    expected_precursor = pl.precursor_mass_loss(logits, batch.precursor_mz, batch.charge, masses=masses, mask=mask,
                                                isotope_errors=prec.isotope_errors, backend="reference")
    assert torch.equal(terms.spectrum, expected_spectrum) and torch.equal(terms.precursor, expected_precursor)
    ce = [torch.nn.functional.cross_entropy(x.transpose(1, 2), batch.tokens) for x in (first, final)]
    assert torch.allclose(terms.ce, (ce[0] + ce[1]) / 2) and torch.equal(terms.ce_final, ce[1])


def test_autoregressive_objective_scores_residues_and_the_stop_token_only():
    c = config(batch_size=4)
    batch = SimulatedTraining(c, VOCAB).batch(0)
    targets = Objective(VOCAB, c.losses, backend="reference", autoregressive=True).ce_targets(batch)
    lengths = batch.mask.sum(1)
    for row, n in enumerate(lengths.tolist()):
        assert torch.equal(targets[row, :n], batch.tokens[row, :n]) and targets[row, n] == 0  # the stop token
        assert (targets[row, n + 1 :] == -100).all()
    assert torch.equal(Objective(VOCAB, c.losses, backend="reference").ce_targets(batch), batch.tokens)


def test_gradient_weighting_gives_each_mass_loss_its_share_of_ce_s_gradient_at_the_logits():
    c = config(batch_size=4, losses={"weighting": "gradient"}, balancing={"enabled": False})
    objective = Objective(VOCAB, c.losses, backend="reference", autoregressive=True)
    batch = SimulatedTraining(c, VOCAB).batch(0)
    logits = torch.randn(4, c.max_length, len(VOCAB), generator=torch.Generator().manual_seed(1), requires_grad=True)
    terms = objective([logits], batch)
    weights = {"ce": 1.0, "spectrum": 0.1, "precursor": 0.3}
    total, factors = objective.weighted_total(terms, weights, logits)
    norm = lambda loss: torch.autograd.grad(loss, logits, retain_graph=True)[0].norm()  # noqa: E731
    # .item(): pytest.approx of a 0-d tensor iterates it (a TypeError from pytest 9.2 on).
    ce = norm(terms.ce).item()
    assert norm(factors[0] * terms.spectrum).item() == pytest.approx(0.1 * ce, rel=1e-4)
    assert norm(factors[1] * terms.precursor).item() == pytest.approx(0.3 * ce, rel=1e-4)
    assert torch.allclose(total, terms.ce + factors[0] * terms.spectrum + factors[1] * terms.precursor)
    value = Objective(VOCAB, config(batch_size=4).losses, backend="reference", autoregressive=True)
    total, factors = value.weighted_total(terms, {"ce": 1.0, "spectrum": 0.0, "precursor": 0.3}, logits)
    assert factors.tolist() == pytest.approx([0.0, 0.3]) and torch.allclose(total, terms.ce + 0.3 * terms.precursor)
    with pytest.raises(ValueError, match="disable balancing"):
        config(losses={"weighting": "gradient"}, balancing={"enabled": True})


def test_objective_rejects_unknown_positions():
    with pytest.raises(ValueError, match="losses.positions"):
        Objective(VOCAB, config(losses={"positions": "predicted"}).losses)


# ------------------------------------------------------------------ checkpoints
def test_atomic_save_keeps_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save({"step": 1}, path)

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]


# ------------------------------------------------------------------ summary
def test_summary_table_has_a_row_per_split_and_decoding_found_in_the_final_metrics():
    final = {"val/easy/greedy/peptide_recall": 0.5, "val/easy/greedy/ppm_error": 12345.6,
             "val/real/spectrum_rerank/token_accuracy": 0.25, "val/easy/ce": 2.0, "train/ce": 3.0}
    header, *rows = summary_table(final)
    assert header.split()[:2] == ["split", "decoding"] and "median ppm" in header
    assert [row.split()[:2] for row in rows] == [["easy", "greedy"], ["real", "spectrum_rerank"]]
    assert rows[0].split()[2:] == ["0.500", "-", "-", "12,345.6"]
    assert rows[1].split()[2:] == ["-", "0.250", "-", "-"]
    assert summary_table({"train/ce": 3.0}) == []


# ------------------------------------------------------------------ curves
def test_curves_leave_out_empty_panels_and_name_the_series_at_zero(tmp_path):
    records = [{"step": s, "train/ce_final": 3.0 - s / 10, "curriculum/ce_weight": 1.0,
                "curriculum/spectrum_weight": 0.0, "curriculum/precursor_weight": 0.0} for s in (1, 2, 3)]
    series = plots._series(records)
    weights = next(panel for panel in plots.PANELS if panel[0].startswith("Loss weights"))
    factors = next(panel for panel in plots.PANELS if panel[0].startswith("Factors"))
    assert plots._panel_series(series, weights[2], weights[3]) == (
        ["curriculum/ce_weight"], ["curriculum/precursor_weight", "curriculum/spectrum_weight"])
    assert plots._panel_series(series, factors[2], factors[3]) == ([], [])
    assert plots.plot_curves(records, tmp_path / "curves.png").is_file()


def test_compiled_model_is_one_graph_and_its_steps_equal_the_eager_steps():
    """What ``compile: true`` compiles (the model) traces as one graph (fullgraph: no break
    costing speed) and three training steps through it, the mass losses included, give the
    eager steps' values and weights. aot_eager: dynamo and AOT autograd, what our code must
    survive; inductor's codegen is torch's."""
    from peptide_losses.train.data import training_data
    from peptide_losses.train.trainer import build, training_step

    c = config(batch_size=8, model={"dim": 32, "heads": 2, "ff_dim": 64, "encoder_layers": 1, "decoder_layers": 1},
               simulation={"proteins": PROTEINS}, schedule={"spectrum_weights": [0.1], "precursor_weights": [0.1]})
    data = training_data(c, VOCAB, "cpu")
    weights = staged_weights(c.schedule, 0, c.steps)
    runs = []
    for compiled in (False, True):
        model, objective = build(c, VOCAB, torch.device("cpu"))
        train_model = torch.compile(model, backend="aot_eager", fullgraph=True) if compiled else model
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        values = torch.stack([training_step(train_model, objective, optimizer, data.batch(s), weights, c)
                              for s in range(3)])
        runs.append((values, [p.detach().clone() for p in model.parameters()]))
    (eager, eager_weights), (compiled, compiled_weights) = runs
    assert torch.isfinite(eager).all() and eager[:, 2].gt(0).all()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    for a, b in zip(compiled_weights, eager_weights):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_closing_line_reports_each_splits_best_recall_from_the_runs_own_metrics():
    from peptide_losses.train.summary import closing_line

    final = {"val/easy/greedy/peptide_recall": 0.906, "val/easy/spectrum_rerank/peptide_recall": 0.93,
             "val/real/greedy/peptide_recall": 0.1, "val/real/greedy/token_accuracy": 0.9, "train/ce": 1.0}
    line = closing_line(final)
    assert line.startswith("this run's best peptide recall per split: easy 0.930 (spectrum_rerank), real 0.100 (greedy)")
    assert "none validated" in closing_line({"train/ce": 1.0})


def test_the_human_peptide_preset_can_write_every_shipped_real_peptide():
    from pathlib import Path

    from peptide_losses.datasets import REAL_SETS, real_set

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "training" / "configs" / "preset_human_ms2pip.json"
    c = load_config(path, preset="gpu")
    assert c.simulation.peptides == "human" and c.simulation.train.max_length <= c.max_length
    longest = max(len(item.spectrum.tokens) for name in REAL_SETS for item in real_set(name, VOCAB))
    assert longest <= c.max_length
