"""The spectrum encoder both model kinds read peaks with: sinusoidal m/z and precursor-mass features
(as depthcharge's peak encoder) mixed by transformer encoder layers."""

from __future__ import annotations

import math

import torch
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
