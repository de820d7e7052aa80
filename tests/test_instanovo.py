"""InstaNovo (1.2.2): its ResidueSet's vocabulary, and the acceptance check of issue 14 on the real spectra.

Runs where instanovo is installed (``pip install -e ".[instanovo]"``, an
environment of its own: it needs numpy >= 2, casanovo 5.2.1 numpy < 2). CI
runs this file in such an environment (.ci/run).
"""

from pathlib import Path

import pytest
import torch

from peptide_losses import Vocabulary
from peptide_losses.spectra import collate, read_mgf

from model_targets import check_true_peptides

#: The shared spectra's ProForma names -> InstaNovo's Unimod accessions (its residue_remapping).
REMAPPING = {
    "C[Carbamidomethyl]": "C[UNIMOD:4]",
    "M[Oxidation]": "M[UNIMOD:35]",
    "N[Deamidated]": "N[UNIMOD:7]",
    "Q[Deamidated]": "Q[UNIMOD:7]",
}


@pytest.fixture(scope="module")
def residue_set(instanovo):
    """The residue set of InstaNovo's default configuration, as its trainer builds it."""
    import yaml  # instanovo's own dependency: imported here so that collection never needs it
    from instanovo.utils.residues import ResidueSet

    config = Path(instanovo.__file__).parent / "configs" / "residues" / "default.yaml"
    return ResidueSet(residue_masses=yaml.safe_load(config.read_text())["residues"], residue_remapping=REMAPPING)


@pytest.fixture(scope="module")
def real(real_mgf, residue_set):
    """The 128 real spectra and their peptides as the InstaNovo transformer's targets: reversed, [EOS], [PAD]."""
    spectra = read_mgf(real_mgf, Vocabulary.default())
    rows = [residue_set.encode(residue_set.tokenize(s.sequence)[::-1], add_eos=True) for s in spectra]
    length = max(map(len, rows))
    targets = torch.tensor([row + [residue_set.PAD_INDEX] * (length - len(row)) for row in rows])
    return collate(spectra, Vocabulary.default()), targets, spectra


def test_from_instanovo_is_the_logit_order_with_the_residue_sets_masses(residue_set):
    vocab = Vocabulary.from_instanovo(residue_set)
    vocab.check_tokens(residue_set.vocab)
    assert vocab.special == ("[PAD]", "[SOS]", "[EOS]") and vocab.tokens[residue_set.EOS_INDEX] == "[EOS]"
    for token, mass in zip(vocab.tokens[3:], vocab.masses[3:]):
        assert mass == residue_set.residue_masses[token]
    assert [t for t in vocab.tokens if vocab.is_n_terminal(t)] == ["[UNIMOD:1]", "[UNIMOD:5]", "[UNIMOD:385]"]
    with pytest.raises(ValueError, match="token index 0: vocabulary has '<pad>', model has '\\[PAD\\]'"):
        Vocabulary.default().check_tokens(residue_set.vocab)


def test_precursor_mz_agrees_with_instanovos_own(real, residue_set):
    batch, targets, spectra = real
    vocab = Vocabulary.from_instanovo(residue_set)
    for spectrum, row in zip(spectra, targets.tolist()):
        ours = vocab.precursor_mz(row, spectrum.charge)
        theirs = residue_set.get_sequence_mass(residue_set.tokenize(spectrum.sequence), spectrum.charge)
        # InstaNovo rounds H2O to 18.0106 Da and its residue masses to 1e-6 Da.
        assert abs(ours - theirs) / theirs * 1e6 < 0.5


def test_acceptance_one_hot_true_peptides_through_the_adapter(real, residue_set):
    batch, targets, _ = real
    check_true_peptides(Vocabulary.from_instanovo(residue_set), residue_set.vocab, targets, batch)
