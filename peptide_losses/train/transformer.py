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
from .encoder import MAX_CHARGE, SpectrumEncoder, sinusoidal


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

    def cached_decoder(self, memory, padding, start, repeats: int = 1) -> "CachedDecoder":
        """Next-token logits one token at a time (:class:`CachedDecoder`), for ``repeats`` rows per
        spectrum (a beam's K candidates) of the encoded spectra."""
        return CachedDecoder(self, memory, padding, start, repeats)

    def forward(self, mz, intensity, peak_mask, precursor_mz, charge, tokens) -> list[torch.Tensor]:
        """Peaks (B, N), precursor m/z (B,), charge (B,), target tokens (B, L) ->
        ``[logits (B, L, V)]``, position l predicting token l from the tokens before it."""
        memory, padding, start = self.encode(mz, intensity, peak_mask, precursor_mz, charge)
        return [self.decode(memory, padding, start, tokens[:, :-1])]

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class CachedDecoder:
    """:meth:`PeptideTransformer.decode`'s last position, computed for the newest token alone.

    Each layer's self-attention keys and values of the tokens so far are kept
    (and its cross-attention keys and values of the peaks computed once), so a
    step costs one position instead of the whole prefix: decoding L tokens does
    O(L) position updates instead of O(L^2). Call it with the prefix grown by one
    token per step; :meth:`reorder` makes the cache follow a beam's rows. For
    evaluation: dropout is not applied.
    """

    def __init__(self, model: PeptideTransformer, memory, padding, start, repeats: int) -> None:
        self.model, self.heads, self.steps, self.repeats = model, model.config.heads, 0, repeats
        self.start = start.repeat_interleave(repeats, 0)
        dim = model.config.dim
        # The peaks' keys and values once per spectrum, not per row: a spectrum's ``repeats`` rows
        # attend to them as that many queries of one attention call. Repeated per row, one query
        # each, the cross-attention read every spectrum's keys ``repeats`` times and took 85 % of a
        # beam step on an H200 (benchmarks/results/nvidia-h200/beam_profile.md).
        self.memory = []
        for layer in model.decoder:
            attention = layer.multihead_attn
            keys, values = nn.functional.linear(memory, attention.in_proj_weight[dim:],
                                                attention.in_proj_bias[dim:]).chunk(2, -1)
            self.memory.append((self._split(keys), self._split(values)))
        self.attend = ~padding[:, None, None, :]
        # Every layer's self-attention keys and values, (L, layers, 2, R, heads, D / heads): time first,
        # so the tokens so far are one contiguous block that a reorder copies in one call into the
        # spare buffer (then the two swap). Grown by concatenation and reordered layer by layer, the
        # cache was copied twice per step, 28 % of a beam step's device time on an H100.
        rows = self.start.shape[0]
        shape = (model.max_length, len(model.decoder), 2, rows, self.heads, dim // self.heads)
        self.cache = self.start.new_empty(shape)
        self.spare = self.start.new_empty(shape)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        """(R, T, D) -> (R, heads, T, D / heads)."""
        return x.view(x.shape[0], x.shape[1], self.heads, -1).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], -1)

    def __call__(self, prefix: torch.Tensor) -> torch.Tensor:
        """Logits (R, V) of the token after ``prefix`` (R, t), t = the steps taken so far."""
        if prefix.shape[1] != self.steps:
            raise ValueError(f"the cache holds {self.steps} tokens, the prefix has {prefix.shape[1]}")
        model, t = self.model, self.steps
        if t >= model.max_length:
            raise ValueError(f"the model writes at most {model.max_length} tokens; the prefix has {t}")
        x = (self.start if t == 0 else model.token(prefix[:, -1:])) + model.position[t]
        rows, dim = x.shape[0], x.shape[-1]
        for i, layer in enumerate(model.decoder):
            attention = layer.self_attn
            q, k, v = nn.functional.linear(layer.norm1(x), attention.in_proj_weight,
                                           attention.in_proj_bias).view(rows, 3, self.heads, -1).unbind(1)
            self.cache[t, i, 0], self.cache[t, i, 1] = k, v
            x = x + attention.out_proj(self._attend_cache(q, self.cache[:t + 1, i, 0], self.cache[:t + 1, i, 1]))
            cross = layer.multihead_attn
            q = nn.functional.linear(layer.norm2(x), cross.in_proj_weight[:dim], cross.in_proj_bias[:dim])
            keys, values = self.memory[i]
            # (B * repeats, 1, D) -> (B, heads, repeats, D / heads): each spectrum's rows as its queries.
            q = q.view(-1, self.repeats, self.heads, dim // self.heads).transpose(1, 2)
            attended = nn.functional.scaled_dot_product_attention(q, keys, values, attn_mask=self.attend)
            x = x + cross.out_proj(attended.transpose(1, 2).reshape(x.shape))
            x = x + layer.linear2(layer.activation(layer.linear1(layer.norm3(x))))
        self.steps += 1
        return model.head(model.norm(x))[:, -1]

    @staticmethod
    def _attend_cache(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """One query per row (R, heads, D / heads) over the tokens so far (t, R, heads, D / heads) -> (R, 1, D),
        written out: the fused attention kernels tile 64 queries at a time, 63 of them wasted on one."""
        rows, heads, width = q.shape
        k, v = k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3)  # (R, heads, t, d): views of the cache
        weights = torch.softmax(q[:, :, None, :] @ k.transpose(-2, -1) * width ** -0.5, -1)
        return (weights @ v).view(rows, 1, heads * width)

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the cache of ``rows`` (R,), in that order (a beam's survivors). Each row must stay
        among its own spectrum's ``repeats`` rows, as a beam's do: the peaks' keys and values are
        held once per spectrum and do not move."""
        t = self.steps
        torch.index_select(self.cache[:t], 3, rows, out=self.spare[:t])
        self.cache, self.spare = self.spare, self.cache
