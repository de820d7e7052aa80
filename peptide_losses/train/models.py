"""The model kinds a config can name (``model.kind``), each with its class, and what runs any of them."""

from __future__ import annotations

import torch
from torch import nn

from .model import TinyRecursiveModel
from .transformer import PeptideTransformer

MODELS = {"transformer": PeptideTransformer, "recursive": TinyRecursiveModel}


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    while True:
        inner = next((getattr(model, name) for name in ("module", "_orig_mod")
                      if isinstance(getattr(model, name, None), nn.Module)), None)
        if inner is None:
            return model
        model = inner


def run_model(model: nn.Module, batch) -> list[torch.Tensor]:
    """Logits (B, L, V) of a :class:`~peptide_losses.spectra.SpectrumBatch`: one per
    cycle for the recursive model, the teacher-forced ones for an autoregressive
    model (``model`` may be wrapped in DDP or ``torch.compile``)."""
    inputs = (batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)
    if unwrap(model).autoregressive:
        inputs += (batch.tokens,)
    return model(*inputs)
