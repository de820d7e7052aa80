"""Quickstart: cross-entropy and both mass losses in a few training steps, on any device.

    python examples/quickstart.py        # CUDA if there is a GPU, else the CPU: a few seconds

A tiny model learns from simulated spectra of tryptic peptides (the trainer's
simulator, :mod:`peptide_losses.train.simulate`); each step prints the three
losses. The part between the two ``# ---`` lines is quoted in README.md's
Quickstart (tests/test_examples.py keeps them equal).
"""

# --- quickstart: quoted in README.md ---
import torch

import peptide_losses as pl

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
vocab = pl.Vocabulary.default()                               # 29 tokens, index 0 = padding
spectrum_loss = pl.SpectrumMatchingLoss(vocab).to(device)     # distance_scale "auto": 0.005 Da
precursor_loss = pl.PrecursorMassLoss(vocab).to(device)


def training_step(model, batch, optimizer, w=pl.recommended.RECOMMENDED):
    logits = model(batch.mz, batch.intensity, batch.peak_mask, batch.precursor_mz, batch.charge)  # (B, L, V)
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tokens, ignore_index=0)
    spec = spectrum_loss(logits, batch.mz, batch.intensity, mask=batch.mask, peak_mask=batch.peak_mask)
    prec = precursor_loss(logits, batch.precursor_mz, batch.charge, mask=batch.mask)
    # Both weights are 0 in RECOMMENDED: no setting measured so far trains a better model
    # (docs/trainer.md, "Do the mass losses help?"); the losses are logged, the precursor used at decoding.
    loss = ce + w.spectrum_weight * spec + w.precursor_weight * prec
    optimizer.zero_grad(); loss.backward(); optimizer.step()
    return ce.detach(), spec.detach(), prec.detach()
# --- end of the quickstart ---


class TinyModel(torch.nn.Module):
    """Peaks and precursor -> logits (B, L, V): peak features pooled over the real peaks, one linear head."""

    def __init__(self, vocab_size: int, max_length: int, dim: int = 64) -> None:
        super().__init__()
        self.peaks = torch.nn.Sequential(torch.nn.Linear(2, dim), torch.nn.ReLU(), torch.nn.Linear(dim, dim))
        self.precursor = torch.nn.Linear(2, dim)
        self.head = torch.nn.Linear(dim, max_length * vocab_size)
        self.out_shape = (max_length, vocab_size)

    def forward(self, mz, intensity, peak_mask, precursor_mz, charge):
        real = peak_mask[..., None].float()
        # m/z in thousands keeps the inputs near 1.
        peaks = self.peaks(torch.stack([mz / 1000, intensity], -1)) * real
        pooled = peaks.sum(1) / real.sum(1).clamp_min(1)
        precursor = self.precursor(torch.stack([precursor_mz.float() / 1000, charge.float()], -1))
        return self.head(torch.relu(pooled + precursor)).view(-1, *self.out_shape)


def main(steps: int = 5, batch_size: int = 16) -> None:
    # The trainer's data: imported here so that the quoted part above stays what a reader copies.
    from peptide_losses.train.config import load_config
    from peptide_losses.train.data import SimulatedTraining

    # A small proteome (the trainer's default digests 4000 proteins) keeps the start to a second.
    config = load_config(overrides={"batch_size": batch_size, "simulation": {"proteins": 50}})
    data = SimulatedTraining(config, vocab, device)
    model = TinyModel(len(vocab), config.max_length).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    print(f"device {device}; spectrum weight {pl.recommended.RECOMMENDED.spectrum_weight}, "
          f"precursor weight {pl.recommended.RECOMMENDED.precursor_weight}")
    for step in range(steps):
        ce, spec, prec = training_step(model, data.batch(step), optimizer)
        print(f"step {step}: cross-entropy {ce:.3f}, spectrum loss {spec:.4f} Da, precursor loss {prec:.1f}")


if __name__ == "__main__":
    main()
