"""``nn.Module`` forms of the losses, holding their vocabulary and options."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import functional
from .reference import PRECURSOR_DEFAULTS, SPECTRUM_DEFAULTS
from .checks import check_backend, check_flag
from .options import precursor_options, spectrum_options
from .vocabulary import Vocabulary


class _VocabularyLoss(nn.Module):
    """Holds the vocabulary and its masses (V,) in Da as a non-persistent buffer.

    ``tokens``, the model's token names in logit index order (e.g.
    ``Spec2Pep.tokenizer.reverse_index``), are checked once against the
    vocabulary with :meth:`Vocabulary.check_tokens`: a ValueError names the
    first index where they disagree.

    The buffer follows ``.to(device)`` and stays out of ``state_dict``: the
    vocabulary, not a checkpoint, is the source of truth for masses. It stays
    float64 under ``.to(dtype)`` / ``.half()`` / ``.bfloat16()`` of an enclosing
    model: bf16 would round a 130 Da mass to 0.5 Da.
    """

    def __init__(self, vocabulary: Vocabulary | torch.Tensor, options: dict, tokens=None) -> None:
        super().__init__()
        # Checked here, like the loss options, so that a bad one fails at construction, not at the first forward.
        check_backend(options["backend"])
        check_flag("check_values", options["check_values"])
        if tokens is not None:
            if not isinstance(vocabulary, Vocabulary):
                raise TypeError("tokens needs a Vocabulary to check them against, not a mass tensor")
            vocabulary.check_tokens(tokens)
        if isinstance(vocabulary, Vocabulary):
            self.vocabulary = vocabulary
            masses = vocabulary.mass_tensor()
        elif isinstance(vocabulary, torch.Tensor) and vocabulary.ndim == 1 and vocabulary.dtype.is_floating_point:
            self.vocabulary = None
            masses = vocabulary.detach().to(torch.float64)
        else:
            raise TypeError("vocabulary must be a Vocabulary or a (V,) float tensor of token masses in Da")
        self.register_buffer("masses", masses, persistent=False)
        self.options = options

    def _apply(self, fn, *args, **kwargs):
        masses = self.masses
        super()._apply(fn, *args, **kwargs)
        self.masses = masses.to(self.masses.device)
        return self

    def extra_repr(self) -> str:
        vocab = (
            f"vocabulary={len(self.vocabulary)} tokens ({self.vocabulary.fingerprint})"
            if self.vocabulary is not None
            else f"masses={self.masses.shape[0]} tokens"
        )
        return ", ".join([vocab, *(f"{k}={v!r}" for k, v in self.options.items())])


class SpectrumMatchingLoss(_VocabularyLoss):
    """Module form of :func:`peptide_losses.spectrum_matching_loss`.

    ``forward(logits, mz, intensity, mask=None, peak_mask=None)`` with logits
    (B, L, V), mz / intensity / peak_mask (B, N) (None: m/z 0 is padding), mask (B, L); logits=None with
    ``residue_masses=`` (B, L) Da skips the softmax. Options as the function;
    ``tokens``: the model's token names, checked against the vocabulary.
    """

    def __init__(
        self,
        vocabulary: Vocabulary | torch.Tensor,
        *,
        ion_types: Sequence[str] = SPECTRUM_DEFAULTS.ion_types,
        charges: Sequence[int] = SPECTRUM_DEFAULTS.charges,
        direction: str = SPECTRUM_DEFAULTS.direction,
        distance: str = SPECTRUM_DEFAULTS.distance,
        distance_scale: float | str | None = SPECTRUM_DEFAULTS.distance_scale,
        intensity_power: float = SPECTRUM_DEFAULTS.intensity_power,
        reduction: str = SPECTRUM_DEFAULTS.reduction,
        backend: str = "auto",
        check_values: bool = False,
        tokens: Sequence[str | None] | None = None,
    ) -> None:
        checked = spectrum_options(ion_types, charges, direction, distance, distance_scale, intensity_power,
                                   reduction)
        super().__init__(vocabulary, dict(checked._asdict(), backend=backend, check_values=check_values), tokens)

    def forward(self, logits, mz, intensity, mask=None, peak_mask=None, *, residue_masses=None):
        masses = self.masses if logits is not None else None
        return functional.spectrum_matching_loss(
            logits, mz, intensity, masses=masses, mask=mask, peak_mask=peak_mask,
            residue_masses=residue_masses, **self.options,
        )


class PrecursorMassLoss(_VocabularyLoss):
    """Module form of :func:`peptide_losses.precursor_mass_loss`.

    ``forward(logits, precursor_mz, charge, mask=None)`` with logits (B, L, V),
    precursor_mz (B,) m/z, charge (B,) int, mask (B, L) bool. ``tokens``: the
    model's token names, checked against the vocabulary.
    """

    def __init__(
        self,
        vocabulary: Vocabulary | torch.Tensor,
        *,
        scale: float = PRECURSOR_DEFAULTS.scale,
        isotope_errors: Sequence[int] = PRECURSOR_DEFAULTS.isotope_errors,
        reduction: str = PRECURSOR_DEFAULTS.reduction,
        backend: str = "auto",
        check_values: bool = False,
        tokens: Sequence[str | None] | None = None,
    ) -> None:
        checked = precursor_options(scale, isotope_errors, reduction)
        super().__init__(vocabulary, dict(checked._asdict(), backend=backend, check_values=check_values), tokens)

    def forward(self, logits, precursor_mz, charge, mask=None, *, residue_masses=None):
        masses = self.masses if logits is not None else None
        return functional.precursor_mass_loss(
            logits, precursor_mz, charge, masses=masses, mask=mask, residue_masses=residue_masses, **self.options,
        )
