"""Autoregressive recipe: masks from targets, C->N flipping, the N-terminal fold, TeacherForcedMassLosses.

The model here is a Casanovo-like vocabulary built without Casanovo (sorted
tokens, stop token ``$`` at index 1); tests/test_casanovo.py runs the same
adapter on Casanovo's own tokenizer and data.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DEVICE
from peptide_losses import Vocabulary, precursor_mass_loss, reference, spectrum_matching_loss
from peptide_losses.masks import fold_n_terminal, n_terminal_mask, residue_mask
from peptide_losses.order import n_terminus_first
from peptide_losses.recommended import RECOMMENDED, Recommendation
from peptide_losses.teacher_forcing import TeacherForcedMassLosses
from peptide_losses.vocabulary import DEFAULT_MODIFIED, DEFAULT_N_TERMINAL, RESIDUE_MASSES

SORTED = Vocabulary.from_tokens(sorted(["$", *RESIDUE_MASSES, *DEFAULT_MODIFIED, *DEFAULT_N_TERMINAL]), special=("$",))
STOP = SORTED.index("$")
SPECTRUM = dict(ion_types=("b", "y"), charges=(1, 2), distance_scale=0.02, reduction="none")


def targets_c_to_n(peptides, length):
    """(B, length) targets as Casanovo writes them: reversed tokens, then $, then padding."""
    rows = []
    for tokens in peptides:
        row = [SORTED.index(t) for t in reversed(tokens)] + [STOP]
        rows.append(row + [0] * (length - len(row)))
    return torch.tensor(rows)


def one_hot(targets, vocabulary=SORTED, scale=60.0):
    return torch.nn.functional.one_hot(targets, len(vocabulary)).double() * scale


def spectrum_of(masses, charge=2):
    """Observed peaks at exactly the b/y ions (charges 1-2) of per-residue masses (Da)."""
    theo, valid = reference.fragment_mz(torch.tensor([masses], dtype=torch.float64),
                                        torch.ones(1, len(masses), dtype=torch.bool))
    mz = theo[valid][None]
    precursor = (sum(masses) + 18.0105646837 + charge * 1.00727646677) / charge
    return mz, torch.ones_like(mz), torch.tensor([precursor], dtype=torch.float64), torch.tensor([charge])


# ------------------------------------------------------------------ masks
def test_residue_mask_leaves_out_padding_and_the_stop_token():
    targets = targets_c_to_n([["[Acetyl]-", "P", "E", "K"], ["A", "R"]], 7)
    assert residue_mask(targets, SORTED).tolist() == [
        [True, True, True, True, False, False, False],
        [True, True, False, False, False, False, False],
    ]
    assert n_terminal_mask(targets, SORTED).tolist() == [
        [False, False, False, True, False, False, False],
        [False] * 7,
    ]


def test_mask_helpers_reject_bad_targets():
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        residue_mask(torch.zeros(2, 3), SORTED)
    with pytest.raises(ValueError, match=r"targets must be \(B, L\)"):
        residue_mask(torch.zeros(3, dtype=torch.long), SORTED)
    with pytest.raises(TypeError, match="vocabulary must be a Vocabulary"):
        residue_mask(torch.zeros(2, 3, dtype=torch.long), SORTED.mass_tensor())


# ------------------------------------------------------------------ the fold
def test_fold_moves_the_modification_mass_and_its_gradient_to_the_next_residue():
    masses = torch.tensor([[42.0, 97.0, 147.0, 0.0], [0.0, 42.0, 57.0, 71.0]], requires_grad=True)
    mask = torch.tensor([[True, True, True, False], [False, True, True, True]])
    flags = torch.tensor([[True, False, False, False], [False, True, False, False]])
    folded, folded_mask = fold_n_terminal(masses, mask, flags)
    assert folded.tolist() == [[42.0, 139.0, 147.0, 0.0], [0.0, 42.0, 99.0, 71.0]]
    assert folded_mask.tolist() == [[False, True, True, False], [False, False, True, True]]
    (folded * folded_mask).sum().backward()
    assert masses.grad.tolist() == [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]


def test_fold_only_at_the_n_terminus_and_only_onto_a_residue():
    masses = torch.tensor([[42.0, 0.0], [57.0, 42.0]])
    flags = torch.tensor([[True, False], [False, True]])
    folded, mask = fold_n_terminal(masses, torch.tensor([[True, False], [True, True]]), flags)
    assert folded.tolist() == masses.tolist() and mask.tolist() == [[True, False], [True, True]]
    with pytest.raises(ValueError, match=r"must all be \(B, L\)"):
        fold_n_terminal(masses, torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-20, 200), st.booleans(), st.booleans()), min_size=1, max_size=12))
def test_fold_keeps_the_peptide_mass(positions):
    masses = torch.tensor([[m for m, _, _ in positions]], dtype=torch.float64)
    mask = torch.tensor([[k for _, k, _ in positions]])
    flags = torch.tensor([[f for _, _, f in positions]])
    folded, folded_mask = fold_n_terminal(masses, mask, flags)
    assert reference.peptide_mass(folded, folded_mask).item() == pytest.approx(
        reference.peptide_mass(masses, mask).item(), abs=1e-9)


def test_folded_fragments_are_the_modified_peptides_ions():
    """[Acetyl]-PEPTIDEK from one-hot logits: folded, its b/y ions are pyteomics' (Vocabulary.residue_masses).

    Unfolded, the modification is a position of its own: a spurious b1 at its
    mass and one y ion too many, which the theoretical direction sees.
    """
    peptide = ["[Acetyl]-", "P", "E", "P", "T", "I", "D", "E", "K"]
    targets = targets_c_to_n([peptide], 12)
    spectrum = spectrum_of(SORTED.residue_masses([SORTED.index(t) for t in peptide]))
    options = dict(SPECTRUM, direction="theoretical", distance_scale=None, backend="reference")
    got = {
        fold: TeacherForcedMassLosses(SORTED, order="c_to_n", fold_n_terminal=fold, spectrum=options)(
            one_hot(targets), targets, *spectrum)[0].item()
        for fold in (True, False)
    }
    assert got[True] == pytest.approx(0.0, abs=1e-9)
    assert got[False] > 1.0


# ------------------------------------------------------------------ order
def test_n_terminus_first_flips_only_c_to_n():
    x = torch.arange(6).reshape(1, 3, 2)
    assert n_terminus_first(x, "n_to_c") is x
    assert n_terminus_first(x, "c_to_n")[0, :, 0].tolist() == [4, 2, 0]
    with pytest.raises(ValueError, match="order must be one of"):
        n_terminus_first(x, "reversed")
    with pytest.raises(ValueError, match="position dimension"):
        n_terminus_first(torch.zeros(3), "c_to_n")


@pytest.mark.parametrize("backend", ["reference", "triton"])
def test_flipped_c_to_n_logits_equal_n_to_c_logits(backend):
    """Padding and stop ahead of the flipped peptide change nothing: same losses and gradients as N->C."""
    gen = torch.Generator().manual_seed(0)
    lengths = [6, 3, 9]
    batch, length, n_peaks = len(lengths), 11, 40
    logits = (torch.randn(batch, length, len(SORTED), generator=gen, dtype=torch.float64) * 3).to(DEVICE)
    mask = (torch.arange(length)[None] < torch.tensor(lengths)[:, None]).to(DEVICE)
    mz = (torch.rand(batch, n_peaks, generator=gen, dtype=torch.float64) * 1500 + 100).to(DEVICE)
    intensity = torch.rand(batch, n_peaks, generator=gen, dtype=torch.float64).to(DEVICE)
    # C->N as Casanovo writes it: each peptide reversed in place, padding after it.
    c_to_n = torch.zeros_like(logits)
    for b, n in enumerate(lengths):
        c_to_n[b, :n] = logits[b, :n].flip(0)
    c_to_n.requires_grad_(True)
    n_to_c = logits.clone().requires_grad_(True)
    options = dict(SPECTRUM, masses=SORTED.mass_tensor(device=DEVICE), backend=backend)
    want = spectrum_matching_loss(n_to_c, mz, intensity, mask=mask, **options)
    got = spectrum_matching_loss(n_terminus_first(c_to_n, "c_to_n"), mz, intensity,
                                 mask=n_terminus_first(mask, "c_to_n"), **options)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
    got.sum().backward()
    want.sum().backward()
    for b, n in enumerate(lengths):
        torch.testing.assert_close(c_to_n.grad[b, :n].flip(0), n_to_c.grad[b, :n], rtol=1e-7, atol=1e-9)


# ------------------------------------------------------------------ the adapter module
def test_teacher_forced_losses_equal_the_functions_on_the_peptide_positions():
    gen = torch.Generator().manual_seed(1)
    peptides = [["P", "E", "P", "T", "I", "D", "E", "K"], ["A", "C[Carbamidomethyl]", "R"]]
    targets = targets_c_to_n(peptides, 10)
    logits = torch.randn(2, 10, len(SORTED), generator=gen, dtype=torch.float64)
    mz = torch.rand(2, 30, generator=gen, dtype=torch.float64) * 1000 + 100
    intensity = torch.rand(2, 30, generator=gen, dtype=torch.float64)
    precursor_mz, charge = torch.tensor([450.2, 380.7], dtype=torch.float64), torch.tensor([2, 1])
    losses = TeacherForcedMassLosses(SORTED, tokens=SORTED.tokens, order="c_to_n", spectrum=SPECTRUM,
                                     precursor=dict(isotope_errors=(0, 1), reduction="none"))
    spectrum, precursor = losses(logits, targets, mz, intensity, precursor_mz, charge)
    # By hand: each peptide's positions, in N->C order, padded at the end.
    lengths = [len(p) for p in peptides]
    n_to_c = torch.zeros(2, 10, len(SORTED), dtype=torch.float64)
    for b, n in enumerate(lengths):
        n_to_c[b, :n] = logits[b, :n].flip(0)
    mask = torch.arange(10)[None] < torch.tensor(lengths)[:, None]
    masses = SORTED.mass_tensor()
    torch.testing.assert_close(spectrum, spectrum_matching_loss(n_to_c, mz, intensity, masses=masses, mask=mask,
                                                                **SPECTRUM))
    torch.testing.assert_close(precursor, precursor_mass_loss(n_to_c, precursor_mz, charge, masses=masses, mask=mask,
                                                              isotope_errors=(0, 1), reduction="none"))


def test_teacher_forced_losses_reject_mismatches():
    with pytest.raises(ValueError, match="token index 1"):
        TeacherForcedMassLosses(Vocabulary.default(), tokens=SORTED.tokens)
    with pytest.raises(ValueError, match="order must be one of"):
        TeacherForcedMassLosses(SORTED, order="backwards")
    losses = TeacherForcedMassLosses(SORTED)
    with pytest.raises(ValueError, match=r"targets must be \(B, L\) for logits"):
        losses(torch.zeros(2, 5, len(SORTED)), torch.zeros(2, 6, dtype=torch.long), torch.ones(2, 3),
               torch.ones(2, 3), torch.ones(2), torch.ones(2, dtype=torch.long))


# ------------------------------------------------------------------ recommended weights
def test_recommendation_ramp_is_linear_between_its_fractions():
    rec = Recommendation(spectrum_weight=0.1, precursor_weight=0.01, ramp_start=0.2, ramp_end=0.6, distance_scale=0.02)
    assert [rec.ramp(p) for p in (0.0, 0.2, 0.3, 0.4, 0.6, 0.9)] == pytest.approx([0, 0, 0.25, 0.5, 1, 1])
    assert Recommendation(1, 1, 0.3, 0.3, 0.02).ramp(0.3) == 1.0
    # The integrations' distance scale is the package's evidence-based default, not a second number.
    assert RECOMMENDED.distance_scale == reference.AUTO_DISTANCE_SCALE["da"]
    with pytest.raises(ValueError, match="ramp_start <= ramp_end"):
        Recommendation(0.1, 0.1, 0.5, 0.2, 0.02)
    with pytest.raises(ValueError, match="precursor_weight must be >= 0"):
        Recommendation(0.1, -1.0, 0.1, 0.2, 0.02)
