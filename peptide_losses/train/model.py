"""A small non-autoregressive de novo model in the tiny-recursive-model style.

The spectrum encoder turns each peak into sinusoidal m/z features plus an
intensity projection (as depthcharge's peak encoder), adds one token for the
precursor (sinusoidal neutral mass + charge embedding) and mixes them with a
few transformer layers. One tiny decoder block (self-attention over the L
output positions, cross-attention to the peaks, MLP) is then applied
recursively (:class:`TinyBlock`): each cycle refines a latent state ``z`` ``inner_steps`` times from
the current answer ``y``, then refines ``y`` from ``z``. The same block does
both, so depth comes from recursion, not parameters. Logits (B, L, V) are read
from ``y`` after every cycle, for deep supervision.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .encoder import SpectrumEncoder

class TinyBlock(nn.Module):
    """Pre-norm self-attention over the L positions, cross-attention to the peaks, MLP.

    The peaks' keys and values are projected once per forward pass
    (:meth:`memory_keys`) and reused by every recursive call: the memory does
    not change between cycles.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        d = config.dim
        self.heads = config.heads
        self.dropout = config.dropout
        self.norm_self, self.norm_cross, self.norm_mlp = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.self_out = nn.Linear(d, d)
        self.query = nn.Linear(d, d)
        self.key_value = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, config.ff_dim), nn.GELU(), nn.Linear(config.ff_dim, d))

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, heads, T, D / heads)."""
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def _attend(self, q, k, v, mask=None) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(self._split(q), k, v, attn_mask=mask, dropout_p=p)
        return out.transpose(1, 2).flatten(-2)

    def memory_keys(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values (B, heads, N + 1, D / heads) of the encoded peaks."""
        k, v = self.key_value(memory).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, h, keys, attend_mask):
        """h (B, L, D); keys from :meth:`memory_keys`; attend_mask (B, 1, 1, N + 1) True at real peaks."""
        q, k, v = self.qkv(self.norm_self(h)).chunk(3, dim=-1)
        h = h + self.self_out(self._attend(q, self._split(k), self._split(v)))
        h = h + self.cross_out(self._attend(self.query(self.norm_cross(h)), *keys, attend_mask))
        return h + self.mlp(self.norm_mlp(h))


class TinyRecursiveModel(nn.Module):
    """Spectrum -> logits (B, L, V) after each of ``cycles`` recursive refinements.

    Args:
        config: sizes (:class:`ModelConfig`).
        vocab_size: V, including padding at index 0 (which also marks "no residue").
        max_length: L, the number of output positions.
    """

    autoregressive = False

    def __init__(self, config: ModelConfig, vocab_size: int, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.max_length = max_length
        self.encoder = SpectrumEncoder(config)
        self.answer_init = nn.Parameter(torch.randn(max_length, config.dim) * 0.02)
        self.latent_init = nn.Parameter(torch.randn(max_length, config.dim) * 0.02)
        self.block = TinyBlock(config)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, vocab_size)

    def forward(self, mz, intensity, peak_mask, precursor_mz, charge) -> list[torch.Tensor]:
        """Peaks (B, N) m/z / intensity / bool mask, precursor m/z (B,), charge (B,) ->
        ``cycles`` float32 logits (B, L, V), the last one the answer."""
        memory, padding = self.encoder(mz, intensity, peak_mask, precursor_mz, charge)
        batch = mz.shape[0]
        y = self.answer_init.expand(batch, -1, -1)
        z = self.latent_init.expand(batch, -1, -1)
        keys = self.block.memory_keys(memory)
        attend = ~padding[:, None, None, :]
        step = lambda h: self.block(h, keys, attend)  # noqa: E731
        logits = []
        for _ in range(self.config.cycles):
            for _ in range(self.config.inner_steps):
                z = step(z + y)
            y = step(y + z)
            logits.append(self.head(self.norm(y)))
        return logits

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
