"""Vocabulary: masses against pyteomics, parsing, round trips, custom token sets."""

import pytest
import torch
from hypothesis import given, settings
from pyteomics import mass

from helpers.vocabulary import DEFAULT, UNIMOD_COMPOSITIONS, peptides, pyteomics_token_masses, unimod_delta
from peptide_losses import Vocabulary, constants
from peptide_losses.vocabulary import DEFAULT_MODIFIED, DEFAULT_N_TERMINAL, RESIDUE_MASSES, UNIMOD_DELTAS

# How Casanovo / MassIVE-KB write each default modification.
CASANOVO_NOTATION = {
    "C[Carbamidomethyl]": "C+57.021",
    "M[Oxidation]": "M+15.995",
    "N[Deamidated]": "N+0.984",
    "Q[Deamidated]": "Q+0.984",
    "[Acetyl]-": "+42.011",
    "[Carbamyl]-": "+43.006",
    "[Ammonia-loss]-": "-17.027",
    "[+25.980265]-": "+43.006-17.027",
}


# ------------------------------------------------------------------ masses
@pytest.mark.parametrize("residue", sorted(RESIDUE_MASSES))
def test_residue_mass_equals_pyteomics(residue):
    assert RESIDUE_MASSES[residue] == pytest.approx(mass.std_aa_mass[residue], abs=1e-9)
    assert DEFAULT.masses[DEFAULT.index(residue)] == pytest.approx(mass.std_aa_mass[residue], abs=1e-9)


@pytest.mark.parametrize("name", sorted(UNIMOD_COMPOSITIONS))
def test_unimod_delta_equals_its_composition(name):
    delta, formula = UNIMOD_DELTAS[name]
    assert delta == pytest.approx(unimod_delta(name), abs=1e-8)
    assert mass.Composition(formula=formula) == mass.Composition(formula=UNIMOD_COMPOSITIONS[name])


def test_every_default_token_mass():
    expected = {Vocabulary.PADDING: 0.0, **pyteomics_token_masses()}
    assert set(DEFAULT.tokens) == set(expected)
    for token, value in zip(DEFAULT.tokens, DEFAULT.masses):
        assert value == pytest.approx(expected[token], abs=1e-8), token
    assert expected["[+25.980265]-"] == pytest.approx(unimod_delta("Carbamyl") + unimod_delta("Ammonia-loss"), abs=2e-3)


def test_constants_equal_pyteomics():
    nist = mass.nist_mass
    assert constants.PROTON == pytest.approx(nist["H+"][0][0], abs=1e-11)
    assert constants.HYDROGEN == pytest.approx(nist["H"][0][0], abs=1e-11)
    assert constants.H2O == pytest.approx(mass.calculate_mass(formula="H2O"), abs=1e-10)
    assert constants.NH3 == pytest.approx(mass.calculate_mass(formula="NH3"), abs=1e-10)
    assert constants.CO == pytest.approx(mass.calculate_mass(formula="CO"), abs=1e-10)
    assert constants.C13_C12 == pytest.approx(nist["C"][13][0] - nist["C"][12][0], abs=1e-10)


@pytest.mark.parametrize("ion", "abcxyz")
def test_ion_offsets_equal_pyteomics_ion_compositions(ion):
    # pyteomics: ion mass = residues + H2O + std_ion_comp[ion]
    expected = constants.H2O + mass.calculate_mass(composition=mass.std_ion_comp[ion])
    assert constants.ION_OFFSETS[ion] == pytest.approx(expected, abs=1e-10)


def test_peptide_and_precursor_mass_equal_pyteomics():
    sequence = "[Acetyl]-PEPM[Oxidation]C[Carbamidomethyl]K"
    tokens = DEFAULT.tokenize(sequence)
    aa_mass = pyteomics_token_masses()
    assert DEFAULT.peptide_mass(sequence) == pytest.approx(mass.fast_mass(tokens, aa_mass=aa_mass), abs=1e-8)
    for z in (1, 2, 3):
        expected = mass.fast_mass(tokens, ion_type="M", charge=z, aa_mass=aa_mass)
        assert DEFAULT.precursor_mz(sequence, z) == pytest.approx(expected, abs=1e-8)
    with pytest.raises(ValueError, match="charge"):
        DEFAULT.precursor_mz(sequence, 0)


def test_residue_masses_fold_the_n_terminal_delta():
    masses = DEFAULT.residue_masses("[Acetyl]-PEK")
    assert len(masses) == 3
    assert masses[0] == pytest.approx(mass.std_aa_mass["P"] + unimod_delta("Acetyl"), abs=1e-8)
    assert DEFAULT.residue_masses(DEFAULT.encode("[Acetyl]-PEK") + [0, 0]) == masses
    with pytest.raises(ValueError, match="N-terminal"):
        DEFAULT.residue_masses("[Acetyl]-")


# ------------------------------------------------------------------ layout
def test_default_layout_and_padding():
    assert len(DEFAULT) == 29
    assert DEFAULT.tokens[0] == Vocabulary.PADDING and DEFAULT.masses[0] == 0.0
    tensor = DEFAULT.mass_tensor()
    assert tensor.dtype == torch.float64 and tensor.shape == (29,) and tensor[0] == 0
    assert DEFAULT.mass_tensor(torch.float32).dtype == torch.float32
    assert [t for t in DEFAULT.tokens if DEFAULT.is_n_terminal(t)] == list(DEFAULT_N_TERMINAL)
    assert "M[Oxidation]" in DEFAULT and "M[Foo]" not in DEFAULT


# ------------------------------------------------------------------ parsing
@pytest.mark.parametrize(
    "text, tokens",
    [
        ("PEPTIDE", list("PEPTIDE")),
        ("M+15.995PEPC+57.021K", ["M[Oxidation]", "P", "E", "P", "C[Carbamidomethyl]", "K"]),
        ("N+0.984Q+0.984R", ["N[Deamidated]", "Q[Deamidated]", "R"]),
        ("+42.011PEPK", ["[Acetyl]-", "P", "E", "P", "K"]),
        ("+43.006PEPK", ["[Carbamyl]-", "P", "E", "P", "K"]),
        ("-17.027PEPK", ["[Ammonia-loss]-", "P", "E", "P", "K"]),
        ("+43.006-17.027PEPK", ["[+25.980265]-", "P", "E", "P", "K"]),
        ("[Acetyl]-PEPM[Oxidation]K", ["[Acetyl]-", "P", "E", "P", "M[Oxidation]", "K"]),
        ("[+42.011]-PEM[+15.995]K", ["[Acetyl]-", "P", "E", "M[Oxidation]", "K"]),
        ("[+25.980265]-PEK", ["[+25.980265]-", "P", "E", "K"]),
    ],
)
def test_parses_proforma_and_casanovo_notation(text, tokens):
    assert DEFAULT.tokenize(text) == tokens
    assert DEFAULT.encode(text) == [DEFAULT.index(t) for t in tokens]


@pytest.mark.parametrize(
    "text, token, position",
    [
        ("PEPBK", "B", 3),
        ("PEPTIDEc", "c", 7),
        ("PEPM+16.500K", "M+16.500", 3),
        ("PEPM[Foo]K", "M[Foo]", 3),
        ("[Foo]-PEPK", "[Foo]-", 0),
        ("+99.000PEPK", "+99.000", 0),
        ("PEP[Acetyl]-K", "P[Acetyl]", 2),
    ],
)
def test_unknown_token_names_it_and_its_position(text, token, position):
    with pytest.raises(ValueError) as error:
        DEFAULT.encode(text)
    message = str(error.value)
    assert repr(token) in message and f"position {position}" in message


def test_decode_skips_padding_and_rejects_bad_indices():
    indices = DEFAULT.encode("[Acetyl]-PEPK")
    assert DEFAULT.decode([*indices, 0, 0]) == "[Acetyl]-PEPK"
    assert DEFAULT.decode(torch.tensor([*indices, 0])) == "[Acetyl]-PEPK"
    with pytest.raises(ValueError, match=r"index 29 at position 1"):
        DEFAULT.decode([1, 29])
    with pytest.raises(ValueError, match=r"index -1 at position 0"):
        DEFAULT.decode([-1])
    with pytest.raises(ValueError, match="'Z'"):
        DEFAULT.index("Z")


@settings(max_examples=200, deadline=None)
@given(peptides())
def test_round_trip_bracket_notation(tokens):
    text = "".join(tokens)
    indices = DEFAULT.encode(text)
    assert [DEFAULT.tokens[i] for i in indices] == tokens
    assert DEFAULT.decode(indices) == text
    assert DEFAULT.encode(DEFAULT.decode(indices)) == indices


@settings(max_examples=200, deadline=None)
@given(peptides())
def test_round_trip_casanovo_notation(tokens):
    casanovo = "".join(CASANOVO_NOTATION.get(t, t) for t in tokens)
    assert DEFAULT.tokenize(casanovo) == tokens
    assert DEFAULT.decode(DEFAULT.encode(casanovo)) == "".join(tokens)


# ------------------------------------------------------------------ custom vocabularies
def test_from_tokens_takes_masses_from_the_tables():
    vocab = Vocabulary.from_tokens(["A", "K", "K[+42.011]", "C[Carbamidomethyl]", "[+42.011]-"])
    assert vocab.tokens == ("<pad>", "A", "K", "K[+42.011]", "C[Carbamidomethyl]", "[+42.011]-")
    assert vocab.masses[3] == pytest.approx(mass.std_aa_mass["K"] + 42.011, abs=1e-9)
    assert vocab.masses[4] == pytest.approx(mass.std_aa_mass["C"] + unimod_delta("Carbamidomethyl"), abs=1e-8)
    assert vocab.masses[5] == pytest.approx(42.011, abs=1e-9)
    # Casanovo deltas resolve to this vocabulary's tokens.
    assert vocab.tokenize("+42.011AK+42.011C+57.021") == ["[+42.011]-", "A", "K[+42.011]", "C[Carbamidomethyl]"]
    with pytest.raises(ValueError, match=r"'M'.*position 1"):
        vocab.encode("AMK")
    with pytest.raises(ValueError, match="X\\[Foo\\]"):
        Vocabulary.from_tokens(["A", "X[Foo]"])


def test_from_masses_builds_a_custom_vocabulary():
    vocab = Vocabulary.from_masses({"A": 71.037, "B": 100.5, "B[Foo]": 120.25, "[Bar]-": 10.0})
    assert vocab.tokens[0] == Vocabulary.PADDING and vocab.masses[0] == 0.0
    assert vocab.masses == (0.0, 71.037, 100.5, 120.25, 10.0)
    assert vocab.decode(vocab.encode("[Bar]-AB[Foo]B")) == "[Bar]-AB[Foo]B"
    assert vocab.residue_masses("[Bar]-AB") == pytest.approx([81.037, 100.5])


@pytest.mark.parametrize(
    "tokens, masses, message",
    [
        (("A", "<pad>"), (71.0, 0.0), "padding"),
        (("<pad>", "A"), (1.0, 71.0), "padding"),
        (("<pad>", "A", "A"), (0.0, 71.0, 71.0), "duplicate"),
        (("<pad>", "A"), (0.0,), "length"),
        (("<pad>", "abc"), (0.0, 1.0), "'abc'"),
    ],
)
def test_invalid_vocabularies_are_rejected(tokens, masses, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(tokens, masses)


def test_equality_and_fingerprint():
    same = Vocabulary.from_tokens([*RESIDUE_MASSES, *DEFAULT_MODIFIED, *DEFAULT_N_TERMINAL])
    assert same == DEFAULT and hash(same) == hash(DEFAULT) and same.fingerprint == DEFAULT.fingerprint
    reordered = Vocabulary.from_tokens([*reversed(RESIDUE_MASSES), *DEFAULT_MODIFIED, *DEFAULT_N_TERMINAL])
    shifted = Vocabulary(DEFAULT.tokens, (0.0, DEFAULT.masses[1] + 1e-3, *DEFAULT.masses[2:]))
    for other in (reordered, shifted, Vocabulary.from_tokens(RESIDUE_MASSES)):
        assert other != DEFAULT and other.fingerprint != DEFAULT.fingerprint
    assert len(DEFAULT.fingerprint) == 12 and int(DEFAULT.fingerprint, 16) >= 0


# ------------------------------------------------------------------ special tokens and model token lists
def test_special_tokens_are_named_zero_mass_non_residues():
    vocab = Vocabulary.from_tokens(["$", "A", "K", "[Acetyl]-"], special=("$",))
    assert vocab.tokens == ("<pad>", "$", "A", "K", "[Acetyl]-") and vocab.special == ("$",)
    assert vocab.masses[1] == 0.0 and vocab.masses[2] == pytest.approx(mass.std_aa_mass["A"], abs=1e-9)
    assert vocab.is_special("$") and vocab.is_special("<pad>") and not vocab.is_special("A")
    assert not vocab.is_n_terminal("$") and vocab.is_n_terminal("[Acetyl]-")
    # A peptide written with its stop token and padding: neither is part of it.
    assert vocab.decode([4, 2, 3, 1, 0]) == "[Acetyl]-AK"
    assert vocab.residue_masses([4, 2, 3, 1, 0]) == pytest.approx(vocab.residue_masses("[Acetyl]-AK"))
    same = Vocabulary.from_masses({"$": 0.0, "A": vocab.masses[2], "K": vocab.masses[3], "[Acetyl]-": vocab.masses[4]},
                                  special=("$",))
    assert same == vocab and same.fingerprint == vocab.fingerprint


def test_special_flag_is_part_of_identity():
    plain = Vocabulary.from_masses({"A": 71.037, "X": 0.0})
    flagged = Vocabulary.from_masses({"A": 71.037, "X": 0.0}, special=("X",))
    assert plain != flagged and plain.fingerprint != flagged.fingerprint
    assert plain.decode([1, 2]) == "AX" and flagged.decode([1, 2]) == "A"


def test_stop_token_errors_point_to_special():
    for build in (lambda: Vocabulary.from_tokens(["$", "A"]), lambda: Vocabulary.from_masses({"$": 0.0, "A": 71.0})):
        with pytest.raises(ValueError, match=r"'\$'.*special="):
            build()


@pytest.mark.parametrize(
    "tokens, masses, special, message",
    [
        (("<pad>", "$", "A"), (0.0, 1.0, 71.0), ("$",), r"special token '\$' must have mass 0"),
        (("<pad>", "A"), (0.0, 71.0), ("$",), r"special token '\$' is not among the tokens"),
        (("[PAD]", "A"), (0.0, 71.0), (), "index 0 must be the padding"),
    ],
)
def test_invalid_special_tokens_are_rejected(tokens, masses, special, message):
    with pytest.raises(ValueError, match=message):
        Vocabulary(tokens, masses, special)


def test_named_padding_and_dashless_n_terminal_modification():
    """InstaNovo's layout: padding named [PAD], stop/start tokens, [UNIMOD:1] for acetylation."""
    vocab = Vocabulary(("[PAD]", "[SOS]", "[EOS]", "A", "[UNIMOD:1]"), (0.0, 0.0, 0.0, 71.037, 42.011),
                       ("[PAD]", "[SOS]", "[EOS]"))
    assert vocab.is_n_terminal("[UNIMOD:1]") and not vocab.is_n_terminal("[EOS]")
    assert vocab.residue_masses([4, 3, 3, 2]) == pytest.approx([113.048, 71.037])
    # InstaNovo's beam joins its tokens into strings such as "[UNIMOD:1]AA".
    assert vocab.tokenize("[UNIMOD:1]AA") == ["[UNIMOD:1]", "A", "A"]
    for text in ("[EOS]AA", "A[UNIMOD:1]A"):  # a special token, or the modification inside
        with pytest.raises(ValueError, match="unknown token"):
            vocab.tokenize(text)


def test_check_tokens_names_the_first_disagreement():
    DEFAULT.check_tokens(DEFAULT.tokens)
    DEFAULT.check_tokens([None, *DEFAULT.tokens[1:]])  # depthcharge leaves padding unnamed
    swapped = list(DEFAULT.tokens)
    swapped[5], swapped[9] = swapped[9], swapped[5]
    with pytest.raises(ValueError, match=rf"token index 5: vocabulary has '{DEFAULT.tokens[5]}', model has '{swapped[5]}'"):
        DEFAULT.check_tokens(swapped)
    with pytest.raises(ValueError, match="token index 3: vocabulary has 'S', model has None"):
        DEFAULT.check_tokens([*DEFAULT.tokens[:3], None, *DEFAULT.tokens[4:]])
    with pytest.raises(ValueError, match="29 tokens, model has 30: they disagree from token index 29"):
        DEFAULT.check_tokens([*DEFAULT.tokens, "$"])
    with pytest.raises(ValueError, match="from token index 28"):
        DEFAULT.check_tokens(DEFAULT.tokens[:-1])


@pytest.mark.parametrize("module", ["SpectrumMatchingLoss", "PrecursorMassLoss"])
def test_loss_modules_check_the_model_tokens_once(module):
    import peptide_losses

    cls = getattr(peptide_losses, module)
    cls(DEFAULT, tokens=DEFAULT.tokens)
    with pytest.raises(ValueError, match="token index 1"):
        cls(DEFAULT, tokens=["<pad>", "$", *DEFAULT.tokens[2:]])
    with pytest.raises(TypeError, match="tokens needs a Vocabulary"):
        cls(DEFAULT.mass_tensor(), tokens=DEFAULT.tokens)


def test_model_adapters_reject_other_objects():
    with pytest.raises(TypeError, match="PeptideTokenizer"):
        Vocabulary.from_casanovo(DEFAULT)
    with pytest.raises(TypeError, match="ResidueSet"):
        Vocabulary.from_instanovo(DEFAULT)
