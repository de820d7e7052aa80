"""Both mass losses on an autoregressive model's teacher-forced logits.

The recipe for Casanovo-like models in one module: the mask comes from the
targets (padding and stop left out), C-to-N logits are flipped before the
spectrum loss, and an N-terminal modification token is folded into the first
residue. :mod:`peptide_losses.integrations.casanovo` builds on it.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from . import reference
from .masks import fold_n_terminal, n_terminal_mask, residue_mask
from .modules import PrecursorMassLoss, SpectrumMatchingLoss
from .order import check_order, n_terminus_first
from .vocabulary import Vocabulary


class TeacherForcedMassLosses(nn.Module):
    """Spectrum matching and precursor mass losses from teacher-forced logits.

    Args:
        vocabulary: the model's vocabulary in logit order
            (``Vocabulary.from_casanovo(model.tokenizer)``, ``from_instanovo``).
        tokens: the model's token names in logit order, checked once against
            ``vocabulary`` (:meth:`Vocabulary.check_tokens`); None skips it.
        order: ``"c_to_n"`` when position 0 is the C-terminus (Casanovo,
            InstaNovo transformer), ``"n_to_c"`` otherwise.
        fold_n_terminal: fold an N-terminal modification token into the first
            residue's mass for the spectrum loss (:func:`masks.fold_n_terminal`),
            where the targets hold one. The expected masses are then computed
            in PyTorch (one (B, L, V) softmax) and the fused kernel matches the
            fragments; without it the kernel reads the logits.
        spectrum: options of :class:`SpectrumMatchingLoss` (``distance_scale``...).
        precursor: options of :class:`PrecursorMassLoss` (``isotope_errors``...).

    ``forward(logits, targets, mz, intensity, precursor_mz, charge, peak_mask=None)``
    with logits (B, L, V) where position l predicts ``targets[:, l]`` (for
    Casanovo: ``decoder_output[:, :-1]``), targets (B, L) integer indices with
    padding 0 and the stop token, mz / intensity / peak_mask (B, N) (None: m/z 0 is padding),
    precursor_mz (B,) m/z, charge (B,) integer. Returns ``(spectrum_loss,
    precursor_loss)``, each reduced as its options say.
    """

    def __init__(
        self,
        vocabulary: Vocabulary,
        *,
        tokens: Sequence[str | None] | None = None,
        order: str = "n_to_c",
        fold_n_terminal: bool = True,
        spectrum: dict | None = None,
        precursor: dict | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(vocabulary, Vocabulary):
            raise TypeError(f"vocabulary must be a Vocabulary, got {type(vocabulary).__name__}")
        check_order(order)
        self.spectrum = SpectrumMatchingLoss(vocabulary, tokens=tokens, **(spectrum or {}))
        self.precursor = PrecursorMassLoss(vocabulary, **(precursor or {}))
        self.vocabulary = vocabulary
        self.order = order
        self.fold_n_terminal = bool(fold_n_terminal)

    def forward(self, logits, targets, mz, intensity, precursor_mz, charge, peak_mask=None):
        if logits.ndim != 3 or targets.shape != logits.shape[:2]:
            raise ValueError(
                f"targets must be (B, L) for logits (B, L, V): got targets {tuple(targets.shape)}, "
                f"logits {tuple(logits.shape)} (align them: position l predicts targets[:, l])"
            )
        mask = residue_mask(targets, self.vocabulary)
        precursor = self.precursor(logits, precursor_mz, charge, mask=mask)
        logits, mask, targets = (n_terminus_first(x, self.order) for x in (logits, mask, targets))
        if not self.fold_n_terminal:
            return self.spectrum(logits, mz, intensity, mask=mask, peak_mask=peak_mask), precursor
        expected = reference.expected_residue_masses(logits, self.spectrum.masses)
        expected, mask = fold_n_terminal(expected, mask, n_terminal_mask(targets, self.vocabulary))
        spectrum = self.spectrum(None, mz, intensity, mask=mask, peak_mask=peak_mask, residue_masses=expected)
        return spectrum, precursor
