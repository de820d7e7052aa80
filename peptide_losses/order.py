"""Position order of per-position tensors: the losses read position 0 as the N-terminus.

Prefix sums from position 0 build the a/b/c ions and suffix sums the x/y/z
ions, so the spectrum loss needs its positions N- to C-terminal. The precursor
loss is a sum over positions and does not care. Casanovo and the InstaNovo
transformer write peptides C- to N-terminus (``tokenizer.reverse = True``):
flip them with :func:`n_terminus_first` before the spectrum loss.
"""

from __future__ import annotations

import torch

#: ``"n_to_c"``: position 0 is the N-terminus (the losses' convention);
#: ``"c_to_n"``: position 0 is the C-terminus (Casanovo, InstaNovo transformer).
ORDERS = ("n_to_c", "c_to_n")


def check_order(order: str) -> None:
    """ValueError naming ``order`` unless it is one of :data:`ORDERS`."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")


def n_terminus_first(x: torch.Tensor, order: str) -> torch.Tensor:
    """``x`` with its positions (dimension 1) in N- to C-terminal order.

    Args:
        x: (B, L, ...) logits (B, L, V), a mask or targets (B, L).
        order: the order of ``x``'s positions, one of :data:`ORDERS`.

    Returns:
        ``x`` itself for ``"n_to_c"``; for ``"c_to_n"`` a copy with the whole
        position axis reversed. Padding and stop positions then stand before
        the peptide instead of after it, which is exact: the losses take the
        peptide as the sequence of masked-in positions, wherever they are.
    """
    check_order(order)
    if x.ndim < 2:
        raise ValueError(f"x must have a position dimension (B, L, ...), got shape {tuple(x.shape)}")
    return x if order == "n_to_c" else x.flip(1)
