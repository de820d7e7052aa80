"""InstaNovo (1.2.2): its ResidueSet's vocabulary, the true peptides' losses on the real spectra
(``helpers.model_targets.check_true_peptides``: a mismatched vocabulary cannot pass), reranking its
transformer's beam.

Runs where instanovo is installed (``pip install -e ".[instanovo]"``, an
environment of its own: it needs numpy >= 2, casanovo 5.2.1 numpy < 2). CI
runs this file in such an environment (.ci/run).
"""

from pathlib import Path

import pytest
import torch

from peptide_losses import Vocabulary, spectrum_scores
from peptide_losses.constants import PROTON
from peptide_losses.decoding import candidate_ppm, rerank
from peptide_losses.integrations.candidates import candidate_scores, candidate_tokens
from peptide_losses.spectra import collate, read_mgf

from helpers.model_targets import check_true_peptides

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


def test_rerank_instanovos_beam_by_the_spectrum(real, residue_set):
    """A random InstaNovo transformer's beam (BeamSearchDecoder, return_beam: N->C strings, best first) as token
    rows, scored and reranked (README recipe); it runs offline, no weights downloaded."""
    from instanovo.inference.beam_search import BeamSearchDecoder
    from instanovo.transformer.model import InstaNovo

    batch, _, _ = real
    part, k = slice(0, 4), 5
    mz, intensity = batch.mz[part], batch.intensity[part]
    precursor_mz, charge = batch.precursor_mz[part], batch.charge[part]
    # InstaNovo's batch layout: (B, N, 2) m/z and intensity (m/z 0 at padding); (B, 3) neutral mass, charge, m/z.
    spectra = torch.stack([mz, intensity], -1).float()
    precursors = torch.stack([(precursor_mz - PROTON) * charge, charge, precursor_mz], -1).float()
    torch.manual_seed(0)
    model = InstaNovo(residue_set, dim_model=32, n_head=2, dim_feedforward=32, encoder_layers=1, decoder_layers=1,
                      dropout=0.0).eval()
    weight = 1e6  # large: the spectrum decides among the candidates in tolerance

    vocab = Vocabulary.from_instanovo(model.residue_set)
    beam = BeamSearchDecoder(model).decode(spectra=spectra, precursors=precursors, beam_size=k, max_length=10,
                                           return_beam=True)
    peptides = list(zip(*(beam[f"predictions_beam_{i}"] for i in range(k))))  # per spectrum, best first
    rows = candidate_tokens(peptides, vocab, device=spectra.device)
    log_probs = list(zip(*(beam[f"predictions_log_probability_beam_{i}"] for i in range(k))))
    model_scores = candidate_scores(log_probs, rows.present)
    peak_mask = spectra[..., 0] > 0
    scores = spectrum_scores(rows.tokens, spectra[..., 0], spectra[..., 1], masses=vocab, peak_mask=peak_mask)
    ppm = candidate_ppm(rows.tokens, vocab, precursors[:, 2], precursors[:, 1].long(), isotope_errors=(0, 1))
    choice = rerank(rows.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=20.0,
                    spectrum_scores=scores, weight=weight)
    best = [vocab.decode(row) for row in choice.tokens]  # N->C

    assert rows.tokens.shape[:2] == (4, k)
    assert rows.present.tolist() == [[bool(p) for p in candidates] for candidates in peptides]
    assert rows.present.any()
    masses = vocab.mass_tensor()
    for b, candidates in enumerate(peptides):
        for c, peptide in enumerate(candidates):
            row = rows.tokens[b, c]
            names = residue_set.tokenize(peptide)
            # InstaNovo's own tokenizer and indices, N->C.
            assert row[:len(names)].tolist() == residue_set.encode(names) and not row[len(names):].any()
            assert vocab.decode(row) == peptide
            assert masses[row].sum().item() == pytest.approx(sum(map(residue_set.get_mass, names)), abs=1e-9)
    # The best candidate also comes as a token list.
    assert torch.equal(candidate_tokens([[p] for p in beam["predictions"]], vocab, max_length=rows.tokens.shape[2])
                       .tokens[:, 0], rows.tokens[:, 0])
    assert torch.isfinite(scores[rows.present]).all() and scores[~rows.present].isposinf().all()
    assert (ppm[rows.present] > 50.0).all()  # random peptides, out of both tolerances: the spectrum decides
    assert torch.equal(choice.index, scores.where(rows.present, torch.inf).argmin(1))
    assert best == [candidates[i] for candidates, i in zip(peptides, choice.index.tolist())]
    # InstaNovo ranks by meeting its precursor tolerance (50 ppm), then log-probability: with no candidate
    # in tolerance, weight 0 with its log-probabilities is its first candidate.
    assert rerank(rows.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=50.0).index.tolist() == [0] * 4
