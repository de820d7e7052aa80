"""Masks from target tokens, and the N-terminal modification fold, for autoregressive logits.

Teacher-forced logits (B, L, V) of an autoregressive model (Casanovo,
InstaNovo) are aligned with their targets (B, L): position l predicts
``targets[:, l]``. The mass losses count a position when its target is a
residue or an N-terminal modification; padding and the stop (and start) token
are left out (:func:`residue_mask`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .vocabulary import Vocabulary


def _token_flags(vocabulary: Vocabulary, tokens: torch.Tensor, keep) -> torch.Tensor:
    """(B, L) bool: ``keep(token_name)`` for each index of ``tokens``."""
    if not isinstance(vocabulary, Vocabulary):
        raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
    if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor (B, L) of token indices, got {getattr(tokens, 'dtype', type(tokens))}")
    if tokens.ndim != 2:
        raise ValueError(f"targets must be (B, L), got shape {tuple(tokens.shape)}")
    flags = torch.tensor([keep(t) for t in vocabulary.tokens], dtype=torch.bool, device=tokens.device)
    return flags[tokens]


def residue_mask(targets: torch.Tensor, vocabulary: Vocabulary) -> torch.Tensor:
    """(B, L) bool, True where the target token is a peptide position.

    Args:
        targets: (B, L) integer token indices of ``vocabulary`` (teacher-forcing
            targets, in either order).
        vocabulary: the model's vocabulary (e.g. ``Vocabulary.from_casanovo``).

    False at padding and at the special tokens (stop, start): those carry no
    mass and must not count as residues. An index outside the vocabulary is an
    IndexError from the lookup.
    """
    return _token_flags(vocabulary, targets, lambda t: not vocabulary.is_special(t))


def n_terminal_mask(tokens: torch.Tensor, vocabulary: Vocabulary) -> torch.Tensor:
    """(B, L) bool, True where the token is an N-terminal modification (``[Acetyl]-``...).

    ``tokens``: (B, L) integer indices, the targets under teacher forcing or
    ``logits.argmax(-1)`` for a model that writes the whole peptide at once.
    """
    return _token_flags(vocabulary, tokens, vocabulary.is_n_terminal)


def fold_n_terminal(
    residue_masses: torch.Tensor, mask: torch.Tensor, n_terminal: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add each N-terminal modification's mass to the residue after it, and mask it out.

    A modification token predicted at its own position would make a spurious
    b1 ion at the modification's mass (42 Da for acetylation) and shift every
    b ion by one; folded, the fragments are those of the modified peptide
    (as :meth:`Vocabulary.residue_masses` builds them for a known sequence).
    The peptide mass, and so the precursor loss, is unchanged.

    Args:
        residue_masses: (B, L) per-position masses in Da, N- to C-terminal
            (e.g. ``reference.expected_residue_masses(logits, masses)``).
        mask: (B, L) bool, True at peptide positions.
        n_terminal: (B, L) bool, True where the position holds an N-terminal
            modification (:func:`n_terminal_mask`).

    Returns:
        ``(residue_masses, mask)``: where a row's first masked-in position (its
        N-terminus) is flagged and the next position is masked in, the first
        gives its mass (and gradient) to the next and leaves the mask. Flags
        anywhere else, and everything else, are left as they are.
    """
    if residue_masses.ndim != 2 or mask.shape != residue_masses.shape or n_terminal.shape != residue_masses.shape:
        raise ValueError(
            f"residue_masses, mask and n_terminal must all be (B, L), got {tuple(residue_masses.shape)}, "
            f"{tuple(mask.shape)} and {tuple(n_terminal.shape)}"
        )
    mask = mask.bool()
    first = mask & (torch.cumsum(mask, dim=1) == 1)
    followed = F.pad(mask[:, 1:], (0, 1), value=False)
    fold = n_terminal.bool() & first & followed
    carried = torch.where(fold, residue_masses, torch.zeros_like(residue_masses))
    return residue_masses + F.pad(carried[:, :-1], (1, 0)), mask & ~fold
