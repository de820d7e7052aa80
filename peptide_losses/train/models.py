"""The model kinds a config can name (``model.kind``), each with its class."""

from __future__ import annotations

from .model import TinyRecursiveModel
from .transformer import PeptideTransformer

MODELS = {"transformer": PeptideTransformer, "recursive": TinyRecursiveModel}
