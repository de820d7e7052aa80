"""peptide_losses.integrations.candidates without the tools: beams of names -> token rows and scores."""

import pytest
import torch

from peptide_losses import Vocabulary
from peptide_losses.integrations.candidates import candidate_scores, candidate_tokens

DEFAULT = Vocabulary.default()
#: InstaNovo's layout: named padding, stop and start tokens, a dash-less N-terminal modification.
INSTANOVO_LIKE = Vocabulary.from_masses({"[SOS]": 0.0, "[EOS]": 0.0, "A": 71.037, "K": 128.095, "P": 97.053,
                                         "C[UNIMOD:4]": 160.031, "[UNIMOD:1]": 42.011},
                                        special=("[SOS]", "[EOS]"))


def test_strings_and_token_lists_give_the_same_n_to_c_rows():
    strings = [["[Acetyl]-PEPC[Carbamidomethyl]K", "PEKM[Oxidation]"], ["GG"]]
    lists = [[DEFAULT.tokenize(p) for p in beam] for beam in strings]
    rows = candidate_tokens(strings, DEFAULT)
    assert rows.tokens.dtype == torch.int64 and rows.tokens.shape == (2, 2, 6)
    assert torch.equal(rows.tokens, candidate_tokens(lists, DEFAULT).tokens)
    for b, beam in enumerate(strings):
        for k, peptide in enumerate(beam):
            n = len(lists[b][k])
            assert rows.tokens[b, k, :n].tolist() == DEFAULT.encode(peptide)  # position 0 is the N-terminus
            assert not rows.tokens[b, k, n:].any()
            assert DEFAULT.decode(rows.tokens[b, k]) == peptide
    assert rows.present.tolist() == [[True, True], [True, False]]


def test_short_beams_and_empty_peptides_are_empty_slots():
    # Casanovo: a spectrum whose beams never finished has []; InstaNovo pads its beam with "".
    rows = candidate_tokens([[], ["PEK"], ["AK", ""], [[], "GG"]], DEFAULT, beam_size=3, max_length=5)
    assert rows.tokens.shape == (4, 3, 5)
    assert rows.present.tolist() == [[False] * 3, [True, False, False], [True, False, False], [False, True, False]]
    assert not rows.tokens[~rows.present].any()
    assert rows.tokens[rows.present].count_nonzero(-1).tolist() == [3, 2, 2]
    # Nothing at all still leaves one (empty) slot to choose from.
    assert candidate_tokens([[], []], DEFAULT).tokens.shape == (2, 1, 0)


def test_instanovo_strings_with_a_dashless_n_terminal_modification():
    rows = candidate_tokens([["[UNIMOD:1]PAC[UNIMOD:4]K", ""]], INSTANOVO_LIKE)
    assert [INSTANOVO_LIKE.tokens[i] for i in rows.tokens[0, 0].tolist()] == ["[UNIMOD:1]", "P", "A", "C[UNIMOD:4]", "K"]
    assert rows.present.tolist() == [[True, False]]


@pytest.mark.parametrize("peptide, token", [("PEPXK", "'X' at position 3"), (["P", "E", "Z"], "'Z'"),
                                            ("PEP[Phospho]K", "'P\\[Phospho\\]'")])
def test_unknown_tokens_name_the_spectrum_candidate_and_token(peptide, token):
    with pytest.raises(ValueError, match=rf"peptides\[1\]\[2\] = .*unknown token {token}"):
        candidate_tokens([["PEK"], ["PEK", "GAK", peptide]], DEFAULT)


@pytest.mark.parametrize("peptide", [["A", "K", "[EOS]"], ["[SOS]", "A"], ["A", "<pad>", "K"]])
def test_special_tokens_are_not_residues(peptide):
    with pytest.raises(ValueError, match=r"peptides\[0\]\[0\] = .*is a special token"):
        candidate_tokens([[peptide]], INSTANOVO_LIKE)


def test_too_many_candidates_or_tokens_and_a_bare_string_beam_are_errors():
    with pytest.raises(ValueError, match=r"peptides\[1\] has 3 candidates, more than beam_size=2"):
        candidate_tokens([["AK"], ["AK", "KA", "AA"]], DEFAULT, beam_size=2)
    with pytest.raises(ValueError, match=r"peptides\[0\]\[1\] has 4 tokens, more than max_length=3"):
        candidate_tokens([["AK", "PEPK"]], DEFAULT, max_length=3)
    with pytest.raises(TypeError, match=r"peptides\[0\] is a str \('PEPK'\)"):
        candidate_tokens(["PEPK", "ACDK"], DEFAULT)


def test_candidate_scores_fill_present_slots_and_leave_empty_ones_at_minus_infinity():
    rows = candidate_tokens([["AK", "KA"], [], ["GG", ""]], DEFAULT, beam_size=3)
    scores = candidate_scores([[0.5, 0.25], [], [-1.5, float("-inf")]], rows.present)
    assert scores.dtype == torch.float32 and scores.shape == (3, 3)
    assert scores[rows.present].tolist() == [0.5, 0.25, -1.5]
    assert scores[~rows.present].isneginf().all()


def test_candidate_scores_must_match_the_candidates():
    present = candidate_tokens([["AK", "KA"], ["GG"]], DEFAULT).present
    with pytest.raises(ValueError, match=r"scores\[0\] has 1 scores for 2 candidates in 2 slots"):
        candidate_scores([[0.5], [0.1]], present)
    with pytest.raises(ValueError, match=r"scores\[1\] has 3 scores for 1 candidates in 2 slots"):
        candidate_scores([[0.5, 0.4], [0.1, 0.0, 0.0]], present)
    with pytest.raises(ValueError, match="scores has 1 spectra but present has 2"):
        candidate_scores([[0.5, 0.4]], present)


def test_rows_go_to_the_spectras_device():
    rows = candidate_tokens([["AK", "KA"], ["GG"]], DEFAULT, device="meta")
    assert rows.tokens.device.type == rows.present.device.type == "meta" and rows.tokens.shape == (2, 2, 2)
