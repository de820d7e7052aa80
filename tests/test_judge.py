"""The judge's features against ions weighed independently (pyteomics), its fit, its file, and the
shipped judge on simulated spectra."""

import math
import re

import numpy as np
import pytest
import torch
from pyteomics import mass
from hypothesis import given, settings
from hypothesis import strategies as st

from peptide_losses import Vocabulary
from peptide_losses.features import FEATURES, Beam, candidate_features, fragment_evidence
from peptide_losses.judge import Judge, fit_judge, judge_path
from peptide_losses.predicted_intensity import correlations
from peptide_losses.sequencing import DEFAULT_CHECKPOINT, load_sequencer
from peptide_losses.train.metrics import peptide_matches
from peptide_losses.train.simulate import SpectrumSimulator, generator, split_peptides
from peptide_losses.spectra import Preprocessing

from helpers import DEVICE

VOCAB = Vocabulary.default()
ACETYL = 42.010565
FRAGMENTS = FEATURES[FEATURES.index("intensity_explained"):]


@pytest.fixture(params=["reference", "triton"])
def backend(request):
    """The fragment features by the plain-PyTorch reference and by the kernel (interpreter on the CPU)."""
    return request.param


def evidence(sequence: str, peaks: list[tuple[float, float]], backend: str) -> dict[str, float]:
    device = DEVICE if backend == "triton" else torch.device("cpu")
    tokens = torch.tensor(VOCAB.encode(sequence), device=device)[None, None]
    mz = torch.tensor([[p[0] for p in peaks]], dtype=torch.float64, device=device)
    intensity = torch.tensor([[p[1] for p in peaks]], device=device)
    out = fragment_evidence(tokens, VOCAB.mass_tensor(device=device), VOCAB.start_only_mask(device=device), mz,
                            intensity, torch.ones_like(intensity, dtype=torch.bool), backend=backend)
    return dict(zip(FRAGMENTS, out[0, 0].tolist()))


def b(prefix: str, charge: int = 1, delta: float = 0.0) -> float:
    return mass.fast_mass(prefix, ion_type="b", charge=charge) + delta / charge


def y(suffix: str, charge: int = 1) -> float:
    return mass.fast_mass(suffix, ion_type="y", charge=charge)


def test_fragment_evidence_counts_pyteomics_ions(backend):
    """PEPTK with b1, b2, b3 (singly charged), y1 doubly charged and one unexplained peak: sites 1-3 by
    their b ions, site 4 by y1; b3 and y2 both would pair site 3, but y2 is absent."""
    peaks = [(b("P"), 1.0), (b("PE"), 2.0), (b("PEP"), 1.0), (y("K", 2), 3.0), (400.123, 3.0)]
    got = evidence("PEPTK", sorted(peaks), backend)
    assert got["intensity_explained"] == pytest.approx(7 / 10)
    assert got["peaks_explained"] == pytest.approx(4 / 5)
    assert got["b_matched"] == pytest.approx(3 / 4) and got["y_matched"] == pytest.approx(1 / 4)
    assert got["longest_ladder"] == 1.0 and got["complementary"] == 0.0
    assert got["first_site"] == got["second_site"] == got["last_site"] == got["second_last_site"] == 1.0


def test_complementary_pairs_and_a_broken_ladder(backend):
    """PEPTIDEK with b2, y6 (the complement of b2), b5 and y2: sites 2, 5 and 6 covered."""
    peaks = [(b("PE"), 1.0), (y("PTIDEK"), 1.0), (b("PEPTI"), 1.0), (y("EK"), 1.0)]
    got = evidence("PEPTIDEK", sorted(peaks), backend)
    assert got["complementary"] == pytest.approx(1 / 7)
    assert got["b_matched"] == pytest.approx(2 / 7) and got["y_matched"] == pytest.approx(2 / 7)
    assert got["longest_ladder"] == pytest.approx(2 / 7)  # sites 5 and 6
    assert (got["first_site"], got["second_site"], got["last_site"], got["second_last_site"]) == (0, 1, 0, 1)


def test_an_n_terminal_modification_belongs_to_the_first_residues_ions(backend):
    """[Acetyl]-PEPK: b1 is acetyl + P; a peak at the acetyl alone (+ proton) is no ion."""
    proton = mass.fast_mass("", ion_type="b", charge=1)  # a b ion of no residue: the proton alone
    peaks = [(ACETYL + proton, 5.0),
             (b("P", delta=ACETYL), 1.0), (b("PE", delta=ACETYL), 1.0), (b("PEP", delta=ACETYL), 1.0)]
    got = evidence("[Acetyl]-PEPK", sorted(peaks), backend)
    assert got["b_matched"] == 1.0 and got["first_site"] == 1.0
    assert got["intensity_explained"] == pytest.approx(3 / 8)


def test_candidate_features_are_finite_for_every_slot_and_rank_the_best_first():
    tokens = torch.tensor([[VOCAB.encode("PEPK"), VOCAB.encode("PEKP"), [0] * 4]])
    beam = Beam(tokens, torch.tensor([[-1.0, -3.0, -torch.inf]]), torch.tensor([[True, True, False]]),
                torch.tensor([[1.0, 2.0, torch.nan]]), torch.tensor([[0.01, torch.inf, torch.inf]]))
    mz = torch.tensor([[b("P"), b("PE"), 500.0]])
    features = candidate_features(beam, VOCAB.mass_tensor(), VOCAB.start_only_mask(), mz, torch.ones(1, 3),
                                  torch.ones(1, 3, dtype=torch.bool))
    assert features.shape == (1, 3, len(FEATURES)) and features.isfinite().all()
    column = {name: features[0, :, i].tolist() for i, name in enumerate(FEATURES)}
    assert column["model_rank"][:2] == pytest.approx([0.0, 1 / 3])
    assert column["model_margin"][:2] == pytest.approx([0.0, 2 / 5])  # mean log-probs -1/5 and -3/5
    assert column["spectrum_rank"][:2] == pytest.approx([0.0, 1 / 3]) and column["precursor_fits"] == [1, 1, 0]


def toy(n=400, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(FEATURES), generator=generator)
    labels = x[:, 0] + 0.5 * torch.randn(n, generator=generator) > 1.0
    return x, labels


def test_fit_is_deterministic_and_finds_the_informative_feature():
    x, labels = toy()
    first, again = fit_judge(x, labels), fit_judge(x, labels)
    assert first == again
    weights = torch.tensor(first.weight).abs()
    assert int(weights.argmax()) == 0 and first.weight[0] > 0
    with pytest.raises(ValueError, match="both classes"):
        fit_judge(x, torch.zeros(len(x), dtype=torch.bool))
    x[5, 2] = torch.inf
    with pytest.raises(ValueError, match=f"candidate 5's {FEATURES[2]} is inf"):
        fit_judge(x, labels)


@pytest.mark.parametrize("field, index, value", [("weight", 0, math.nan), ("mean", 4, math.inf), ("scale", 1, 0.0),
                                                 ("scale", 2, -1.0), ("weight", 3, True), ("bias", None, -math.inf)])
def test_a_judge_with_a_number_that_is_not_finite_is_refused(field, index, value):
    """A NaN weight would leave every candidate unchosen and an infinite bias make every one certain: such a
    judge is no judge (so Judge.load names the file of one)."""
    judge = fit_judge(*toy())
    if index is None:
        changed, where = value, field
    else:
        numbers = list(getattr(judge, field))
        numbers[index] = value
        changed, where = tuple(numbers), f"{field}[{index}] ({judge.features[index]})"
    with pytest.raises(ValueError, match=re.escape(f"{where} is {value!r}")):
        Judge(**{**judge.__dict__, field: changed})


def test_judge_file_round_trip_and_refuses_other_features(tmp_path):
    judge = fit_judge(*toy(), fitted_on="toy")
    path = tmp_path / "model.judge.json"
    judge.save(path)
    assert Judge.load(path) == judge and judge_path(tmp_path / "model.pt") == path
    path.write_text(path.read_text().replace('"mean_log_prob"', '"something_else"'))
    with pytest.raises(ValueError, match="refit it"):
        Judge.load(path)


def test_the_shipped_judge_is_confident_on_simulated_easy_spectra_it_gets_right():
    """Simulated easy spectra of peptides never trained on: the judge's choice is right for most, with
    P(correct) near 1 on those (it was fitted on real spectra only)."""
    sequencer = load_sequencer(DEFAULT_CHECKPOINT)
    assert sequencer.judge is not None and sequencer.default_decoding == "judge"
    sim = sequencer.config.simulation
    _, peptides = split_peptides(sim.validation_peptide_fraction, sim.proteins, sim.peptides)
    batch = SpectrumSimulator(peptides, sim.easy, VOCAB, Preprocessing(), sequencer.max_length).sample(
        16, generator("cpu", 7, 1))
    beam = sequencer.beam(batch, beam_size=5)
    probability = sequencer.judge.probability(sequencer.features(batch, beam), beam.finished)
    index = probability.nan_to_num(-1.0).argmax(-1)
    chosen = beam.tokens[torch.arange(16), index]
    right = peptide_matches(chosen, batch.tokens, VOCAB.mass_tensor())
    confidence = probability.gather(1, index[:, None])[:, 0]
    assert right.float().mean() >= 0.75
    assert confidence[right].mean() >= 0.75


def fake_ms2pip(table):
    """ms2pip's output for the peptides in ``table`` ({peptide: (b, y) linear intensities, b[k] / y[k] the
    ion of k + 1 residues}) as log2(I + 0.001); it records what it was asked."""
    asked = []

    def predict(items):
        asked.extend(items)
        return [{ion: np.log2(np.asarray(table[p][i]) + 0.001) for i, ion in enumerate("by")} if p in table else None
                for p, _ in items]

    predict.asked = asked
    return predict


def test_predicted_intensity_correlation_against_pyteomics_ions():
    """[Acetyl]-PEM[Oxidation]K (ms2pip sees PEMK) on a spectrum whose peaks sit at its b and y ions
    (pyteomics' m/z, the modifications added) with the square roots of the predicted intensities:
    correlation 1. The same prediction for PEMK with its peaks shuffled: below 1; a candidate that is
    not valid, or whose peptide ms2pip cannot take, gets 0."""
    b_int, y_int = [0.04, 0.25, 0.01], [0.36, 0.09, 0.16]
    predictor = fake_ms2pip({"PEMK": (b_int, y_int)})
    oxidation = 15.994915
    b_mz = [b("P", delta=ACETYL), b("PE", delta=ACETYL), b("PEM", delta=ACETYL + oxidation)]
    y_mz = [y("K"), y("MK") + oxidation, y("EMK") + oxidation]
    peaks = sorted(zip(b_mz + y_mz, np.sqrt(b_int + y_int)))
    shuffled = sorted(zip(b_mz + y_mz, np.sqrt(b_int + y_int)[[3, 0, 5, 1, 4, 2]]))
    mz = torch.tensor([[p[0] for p in peaks], [p[0] for p in shuffled]], dtype=torch.float64)
    intensity = torch.tensor([[p[1] for p in peaks], [p[1] for p in shuffled]])
    rows = [VOCAB.encode("[Acetyl]-PEM[Oxidation]K"), VOCAB.encode("AAAAAA")]
    tokens = torch.tensor([[r + [0] * (6 - len(r)) for r in rows]] * 2)
    valid = torch.tensor([[True, True], [True, False]])
    got = correlations(tokens, valid, VOCAB, mz, intensity, torch.ones_like(mz, dtype=torch.bool),
                       torch.tensor([2, 2]), predictor)
    assert got[0, 0] == pytest.approx(1.0, abs=1e-6)
    assert got[1, 0] < 0.9 and got[0, 1] == 0.0 and got[1, 1] == 0.0
    assert ("PEMK", 2) in predictor.asked and ("AAAAAA", 2) in predictor.asked  # the invalid one is not asked
    assert len(predictor.asked) == 3


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40).flatmap(lambda width: st.lists(st.lists(st.booleans(), min_size=width, max_size=width),
                                                         min_size=1, max_size=6)))
def test_longest_run_is_the_longest_stretch_of_true(rows):
    """Against itertools.groupby over each row: the longest stretch of consecutive True."""
    import itertools

    from peptide_losses.features import _longest_run

    expected = [max((len(list(g)) for key, g in itertools.groupby(r) if key), default=0) for r in rows]
    covered = torch.tensor(rows, dtype=torch.bool).view(len(rows), -1)
    assert _longest_run(covered).tolist() == expected


def test_psm_features_rank_the_tools_score_and_share_the_evidence_of_a_beams():
    """The tool's score, its rank (0 = best, / K) and margin to the best valid PSM; the evidence columns
    are those a beam's candidates get (candidate_features) for the same peptides; a judge fitted on them
    is a ``psm`` judge, one of a beam's a ``beam`` judge."""
    from peptide_losses.features import EVIDENCE, PSM_FEATURES, psm_features

    tokens = torch.tensor([[VOCAB.encode("PEPK"), VOCAB.encode("PEKP"), VOCAB.encode("KPEP")]])
    score, valid = torch.tensor([[0.5, 0.9, float("nan")]], dtype=torch.float64), torch.tensor([[True, True, False]])
    ppm, spectrum = torch.tensor([[1.0, 30.0, 2.0]]), torch.tensor([[0.01, 0.02, 0.03]])
    peaks = (torch.tensor([[b("P"), b("PE"), 500.0]]), torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool))
    got = psm_features(score, valid, tokens, ppm, spectrum, VOCAB.mass_tensor(), VOCAB.start_only_mask(), *peaks)
    assert got.shape == (1, 3, len(PSM_FEATURES)) and got.isfinite().all()
    column = {name: got[0, :, i].tolist() for i, name in enumerate(PSM_FEATURES)}
    assert column["tool_rank"][:2] == pytest.approx([1 / 3, 0.0])
    assert column["tool_margin"] == pytest.approx([0.4, 0.0, 0.0]) and column["tool_score"][2] == 0.0
    beam = Beam(tokens, torch.tensor([[-1.0, -2.0, -3.0]]), valid, ppm, spectrum)
    theirs = candidate_features(beam, VOCAB.mass_tensor(), VOCAB.start_only_mask(), *peaks)
    assert torch.equal(got[..., 3:], theirs[..., len(FEATURES) - len(EVIDENCE):])
    labels = torch.tensor([True, False, False, True] * 10)
    x = torch.randn(len(labels), len(PSM_FEATURES), generator=torch.Generator().manual_seed(0))
    assert fit_judge(x, labels).kind == "psm" and fit_judge(*toy()).kind == "beam"
