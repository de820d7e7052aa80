"""Teacher-forcing targets of real models (Casanovo, InstaNovo): one-hot logits and decoys.

Targets are C->N, as both models write them: position 0 holds the C-terminal
residue, then the rest of the peptide, the stop token and padding.
"""

import torch

from peptide_losses import precursor_ppm
from peptide_losses.masks import residue_mask
from peptide_losses.recommended import RECOMMENDED
from peptide_losses.teacher_forcing import TeacherForcedMassLosses


def one_hot(targets, size):
    return torch.nn.functional.one_hot(targets, size).double() * 60.0


def shuffled(targets, vocabulary, seed=None):
    """Decoys: each peptide's residues reordered, the C-terminal one (position 0 in C->N order) kept.

    ``seed=None``: the rest reversed (the pseudo-reversed decoy of database
    search); otherwise a random permutation that changes the mass sequence.
    """
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    decoys = targets.clone()
    masses = torch.tensor(vocabulary.masses)
    for b, n in enumerate(residue_mask(targets, vocabulary).sum(-1).tolist()):
        while torch.allclose(masses[decoys[b, :n]], masses[targets[b, :n]]):
            order = torch.arange(n - 2, -1, -1) if gen is None else torch.randperm(n - 1, generator=gen)
            decoys[b, 1:n] = targets[b, 1:n][order]
            assert gen is not None or not torch.allclose(masses[decoys[b, :n]], masses[targets[b, :n]])
    return decoys


def check_true_peptides(vocabulary, tokens, targets, batch):
    """A model's vocabulary gives the losses the right masses: one-hot logits of the true peptides.

    A vocabulary of the right size in another order (Casanovo's against
    ``Vocabulary.default()``) passes every shape check with a median precursor
    error of ~59,000 ppm; these bounds catch it.

    Median precursor error < 2 ppm, max < 20 ppm (isotope errors 0, 1); the
    spectrum loss (recommended distance_scale) ranks the truth above the
    pseudo-reversed peptide in every spectrum. Against random shuffles the
    truth loses 0-2 of the 128 real spectra per draw (Casanovo's vocabulary,
    20 draws, 2026-12-02), to near-isobaric fragment ladders such as
    GHVEC[Carbamidomethyl]IK vs GHELC[Carbamidomethyl]VK: the floor is 126.

    Returns the reference-backend losses module and the true peptides' (spectrum, precursor) losses.
    """
    logits = one_hot(targets, len(vocabulary))
    ppm = precursor_ppm(logits, batch.precursor_mz, batch.charge, masses=vocabulary,
                        mask=residue_mask(targets, vocabulary), isotope_errors=(0, 1))
    assert len(ppm) == 128 and ppm.median() < 2 and ppm.max() < 20, (ppm.median(), ppm.max())
    losses = TeacherForcedMassLosses(
        vocabulary, tokens=tokens, order="c_to_n",
        spectrum=dict(distance_scale=RECOMMENDED.distance_scale, reduction="none", backend="reference"),
        precursor=dict(isotope_errors=(0, 1), reduction="none", backend="reference"),
    )
    peaks = (batch.mz, batch.intensity, batch.precursor_mz, batch.charge, batch.peak_mask)
    true = losses(logits, targets, *peaks)
    for seed in (None, 0, 1, 2):
        decoys = shuffled(targets, vocabulary, seed)
        decoy_spectrum, decoy_precursor = losses(one_hot(decoys, len(vocabulary)), decoys, *peaks)
        wins = int((true[0] < decoy_spectrum).sum())
        assert wins == 128 if seed is None else wins >= 126, (seed, wins)
        torch.testing.assert_close(decoy_precursor, true[1])  # a shuffle keeps the mass
    return losses, true
