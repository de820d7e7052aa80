"""A small PyTorch model of singly charged b/y fragment intensities, distilled from ms2pip (HCD2019),
that runs on the GPU beside the beam: the judge's predicted-intensity evidence without ms2pip.

Input: a peptide's residue letters (modifications dropped, as ms2pip is given them) and its
precursor charge. Output: for each cleavage slot l (between residues l + 1 and l + 2) the share of
the spectrum's b/y intensity that b_{l+1} and its complement y_{n-l-1} carry, a softmax over the
2 (n - 1) ions, the layout of :mod:`peptide_losses.train.intensities`' ms2pip tables, on which it
is trained (``python -m benchmarks.training.intensity_distill``). The weights ship beside the
sequencing checkpoint (``checkpoints/intensity_model.pt``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

#: The residue letters the model reads (index + 1; 0 is padding).
LETTERS = "ACDEFGHIKLMNPQRSTVWY"
#: Where the distilled weights ship.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "checkpoints" / "intensity_model.pt"
#: What the interface adds before log2, as ms2pip's ``log2(I + 0.001)``.
LOG_FLOOR = 0.001


class IntensityModel(nn.Module):
    """Residues and charge -> (P, 2, L - 1) logits of the b and y ion of each slot, -inf past a peptide's
    last slot; a softmax over a peptide's valid entries is its predicted intensity distribution."""

    def __init__(self, width: int = 96, layers: int = 3, heads: int = 4, max_residues: int = 64,
                 max_charge: int = 8) -> None:
        super().__init__()
        self.config = {"width": width, "layers": layers, "heads": heads, "max_residues": max_residues,
                       "max_charge": max_charge}
        self.residue = nn.Embedding(len(LETTERS) + 1, width, padding_idx=0)
        # Distance from either terminus: ion intensities depend on both (e.g. y ions of a C-terminal K/R).
        self.from_n = nn.Embedding(max_residues, width)
        self.from_c = nn.Embedding(max_residues, width)
        self.charge = nn.Embedding(max_charge + 1, width)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, 2))

    def forward(self, letters: torch.Tensor, charge: torch.Tensor) -> torch.Tensor:
        """``letters`` (P, L) int64 (index into :data:`LETTERS` + 1, 0 padding after the peptide),
        ``charge`` (P,) int64 >= 1 -> (P, 2, L - 1) float32 logits (b, y of each slot)."""
        real = letters != 0
        lengths = real.sum(1, keepdim=True)
        position = torch.arange(letters.shape[1], device=letters.device)[None, :]
        from_c = (lengths - 1 - position).clamp(min=0)
        top = self.config["max_residues"] - 1
        x = (self.residue(letters) + self.from_n(position.clamp(max=top)) + self.from_c(from_c.clamp(max=top))
             + self.charge(charge.clamp(1, self.config["max_charge"]))[:, None, :])
        h = self.encoder(x, src_key_padding_mask=~real)
        slots = self.head(torch.cat([h[:, :-1], h[:, 1:]], -1)).transpose(1, 2)  # (P, 2, L - 1)
        valid = position[:, 1:] < lengths  # slot l exists when residue l + 2 does
        return slots.masked_fill(~valid[:, None, :], -torch.inf)


def encode(peptides: list[str], length: int | None = None) -> torch.Tensor:
    """(P, L) letter indices of peptides (each letter in :data:`LETTERS`), 0-padded to ``length`` (default:
    the longest); ValueError naming a peptide with another letter."""
    length = max(map(len, peptides), default=0) if length is None else length
    table = {letter: i + 1 for i, letter in enumerate(LETTERS)}
    out = torch.zeros(len(peptides), length, dtype=torch.long)
    for row, peptide in enumerate(peptides):
        try:
            out[row, :len(peptide)] = torch.tensor([table[letter] for letter in peptide], dtype=torch.long)
        except KeyError as err:
            raise ValueError(f"peptide {peptide!r}: residue {err.args[0]!r} is none of {LETTERS}") from None
    return out


def log_distribution(logits: torch.Tensor) -> torch.Tensor:
    """(P, 2, S) log-softmax over each peptide's valid b/y entries (-inf elsewhere)."""
    flat = logits.flatten(1)
    return torch.log_softmax(flat, -1).view_as(logits)


def save(model: IntensityModel, path: str | Path, record: dict) -> None:
    """The weights with ``record`` (how they were made; kept as JSON values, so that loading needs no pickle)."""
    import json

    record = json.loads(json.dumps(record, default=str))
    torch.save({"config": model.config, "state": model.state_dict(), "record": record}, path)


def load(path: str | Path = DEFAULT_WEIGHTS, device: torch.device | str = "cpu") -> IntensityModel:
    """The model saved at ``path`` (default: the shipped distilled weights), in eval mode on ``device``."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = IntensityModel(**saved["config"])
    model.load_state_dict(saved["state"])
    return model.to(device).eval()


def predictor(model: IntensityModel | None = None, device: torch.device | str = "cpu", batch: int = 4096):
    """A function with :func:`peptide_losses.train.intensities.ms2pip_predictor`'s interface:
    ``[(letters, charge), ...] -> [{"b": array, "y": array}, ...]`` of ``log2(share + 0.001)``, b[k] and
    y[k] the ion of k + 1 residues; the model run in batches on ``device`` (default: the shipped one)."""
    model = load(device=device) if model is None else model
    device = next(model.parameters()).device

    @torch.no_grad()
    def predict(items):
        out = []
        for start in range(0, len(items), batch):
            chunk = items[start:start + batch]
            letters = encode([p for p, _ in chunk]).to(device)
            charge = torch.tensor([z for _, z in chunk], dtype=torch.long, device=device)
            shares = log_distribution(model(letters, charge)).exp()
            values = torch.log2(shares + LOG_FLOOR).cpu().numpy()
            for row, (peptide, _) in enumerate(chunk):
                slots = len(peptide) - 1
                out.append({"b": values[row, 0, :slots], "y": values[row, 1, :slots][::-1].copy()})
        return out

    return predict
