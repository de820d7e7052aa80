"""An autoregressive de novo model in Casanovo's style.

The spectrum encoder is the one of :mod:`.model` (sinusoidal m/z features plus
an intensity projection per peak, a precursor token, transformer layers). The
decoder reads the precursor (sinusoidal neutral mass + charge embedding) as
its first input, then the residues so far (token embedding + learned
position), with causal self-attention and cross-attention to the peaks, and
predicts the next token. Peptides are written N->C; the padding token (index
0, mass 0) doubles as the stop token, so the vocabulary of the losses is the
model's output vocabulary unchanged.

Training uses teacher forcing: :meth:`PeptideTransformer.forward` gets the
target tokens and returns the logits of every position at once, position l
predicting token l. Decoding (greedy and beam search) is in :mod:`.decoding`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..constants import PROTON
from .config import ModelConfig
from .model import MAX_CHARGE, SpectrumEncoder, sinusoidal


class PeptideTransformer(nn.Module):
    """Spectrum + target tokens -> teacher-forced logits (B, L, V).

    Args:
        config: sizes (:class:`ModelConfig`; ``encoder_layers`` and
            ``decoder_layers`` transformer layers of width ``dim``).
        vocab_size: V, including padding / stop at index 0.
        max_length: L, the most tokens a peptide may have.
    """

    autoregressive = True

    def __init__(self, config: ModelConfig, vocab_size: int, max_length: int) -> None:
        super().__init__()
        self.config = config
        self.max_length = max_length
        d = config.dim
        self.encoder = SpectrumEncoder(config)
        self.token = nn.Embedding(vocab_size, d)
        self.position = nn.Parameter(torch.randn(max_length, d) * 0.02)
        self.charge = nn.Embedding(MAX_CHARGE + 1, d)
        self.decoder = nn.ModuleList(
            nn.TransformerDecoderLayer(d, config.heads, config.ff_dim, config.dropout, batch_first=True,
                                       norm_first=True)
            for _ in range(config.decoder_layers)
        )
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab_size)

    def encode(self, mz, intensity, peak_mask, precursor_mz, charge):
        """Peaks (B, N) and precursor (B,) -> (memory (B, N + 1, D), its padding mask, first decoder input (B, 1, D))."""
        memory, padding = self.encoder(mz, intensity, peak_mask, precursor_mz, charge)
        neutral = (precursor_mz.to(torch.float64) - PROTON) * charge
        start = sinusoidal(neutral, self.config.dim) + self.charge(charge.clamp(0, MAX_CHARGE))
        return memory, padding, start[:, None, :]

    def decode(self, memory, padding, start, prefix: torch.Tensor) -> torch.Tensor:
        """Logits (B, t + 1, V) of the token after each of the t prefix tokens (B, t) and after the start."""
        steps = prefix.shape[1] + 1
        x = torch.cat([start, self.token(prefix)], dim=1) + self.position[:steps]
        causal = nn.Transformer.generate_square_subsequent_mask(steps, device=x.device, dtype=x.dtype)
        for layer in self.decoder:
            x = layer(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=padding)
        return self.head(self.norm(x))

    def forward(self, mz, intensity, peak_mask, precursor_mz, charge, tokens) -> list[torch.Tensor]:
        """Peaks (B, N), precursor m/z (B,), charge (B,), target tokens (B, L) ->
        ``[logits (B, L, V)]``, position l predicting token l from the tokens before it."""
        memory, padding, start = self.encode(mz, intensity, peak_mask, precursor_mz, charge)
        return [self.decode(memory, padding, start, tokens[:, :-1])]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
