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

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import PROTON
from .config import ModelConfig

# Wavelength range (m/z units) of the sinusoidal encoding, as depthcharge: resolves
# differences from mDa up to whole spectra.
MIN_WAVELENGTH = 0.001
MAX_WAVELENGTH = 10000.0
MAX_CHARGE = 10


def sinusoidal(values: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) m/z or mass in Da -> (..., dim) float32 sin/cos features."""
    half = dim // 2
    exponent = torch.arange(half, device=values.device, dtype=torch.float64) / max(half - 1, 1)
    wavelength = MIN_WAVELENGTH * (MAX_WAVELENGTH / MIN_WAVELENGTH) ** exponent
    # float64 phase: m/z ~ 1000 over a 0.001 wavelength needs more than float32's 7 digits.
    phase = values.to(torch.float64)[..., None] * (2 * math.pi / wavelength)
    return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).float()


class SpectrumEncoder(nn.Module):
    """Peaks (B, N) and precursor (B,) -> memory (B, N + 1, D) and its padding mask."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dim = config.dim
        self.intensity = nn.Linear(1, config.dim)
        self.charge = nn.Embedding(MAX_CHARGE + 1, config.dim)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(config.dim, config.heads, config.ff_dim, config.dropout,
                                       batch_first=True, norm_first=True)
            for _ in range(config.encoder_layers)
        )

    def forward(self, mz, intensity, peak_mask, precursor_mz, charge):
        peaks = sinusoidal(mz, self.dim) + self.intensity(intensity[..., None].float())
        neutral = (precursor_mz.to(torch.float64) - PROTON) * charge
        precursor = sinusoidal(neutral, self.dim) + self.charge(charge.clamp(0, MAX_CHARGE))
        memory = torch.cat([precursor[:, None, :], peaks], dim=1)
        # The precursor token is always present, so no row of attention is fully masked.
        padding = torch.cat([torch.zeros_like(peak_mask[:, :1]), ~peak_mask], dim=1)
        for layer in self.layers:
            memory = layer(memory, src_key_padding_mask=padding)
        return memory, padding


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
