"""Distil ms2pip's b/y intensities into the package's small torch model (peptide_losses.intensity_model)
and measure how closely it follows ms2pip on peptides it never saw.

    python -m benchmarks.training.intensity_distill --device cuda    # one GPU, about a minute
    python -m benchmarks.training.intensity_distill --steps 20 --no-save   # CPU, seconds

The data: ms2pip's HCD2019 predictions for the GPU preset's 88,073 training peptides at charges
2-4, the table the simulator already caches (peptide_losses.train.intensities; made with the
``simulate`` extra, or read from ``$PEPTIDE_LOSSES_CACHE``). One peptide in 20, by a hash of its
sequence, is held out. The loss is the cross-entropy of the model's intensity distribution over a
peptide's 2 (n - 1) b/y ions against ms2pip's. Reported on the held-out peptides: the Pearson
correlation of the square-rooted shares (the scale the judge's feature compares with observed
peaks). Writes ``results/<device>/intensity_distill.{md,json}`` and, unless ``--no-save``, the weights
to ``peptide_losses/checkpoints/intensity_model.pt``.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import time
from pathlib import Path

import torch

from peptide_losses import intensity_model
from peptide_losses.sequencing import load_sequencer
from peptide_losses.train.intensities import load_intensities
from peptide_losses.train.simulate import split_peptides

from ..environment import RESULTS_ROOT, describe, save_results, slug

CHARGES = [2, 3, 4]


def preset_peptides() -> tuple[list[str], int]:
    """The GPU preset's simulator training peptides, in its order, and its slot count."""
    config = load_sequencer(None, torch.device("cpu")).config
    sim = config.simulation
    train, _ = split_peptides(sim.validation_peptide_fraction, sim.proteins, sim.peptides)
    return [p for p in train if sim.train.min_length <= len(p) <= sim.train.max_length], config.max_length - 1


def held_out(peptide: str) -> bool:
    return hashlib.sha256(peptide.encode()).digest()[0] % 20 == 0


def pearson_sqrt(log_shares: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(P,) Pearson correlation of sqrt(predicted) and sqrt(target) shares over each peptide's valid ions."""
    valid = log_shares.isfinite().flatten(1)
    x = torch.where(valid, log_shares.flatten(1).exp().sqrt(), 0.0)
    y = torch.where(valid, target.flatten(1).sqrt(), 0.0)
    n = valid.sum(1, keepdim=True)
    x = torch.where(valid, x - x.sum(1, keepdim=True) / n, 0.0)
    y = torch.where(valid, y - y.sum(1, keepdim=True) / n, 0.0)
    return (x * y).sum(1) / (x.square().sum(1) * y.square().sum(1)).sqrt().clamp_min(1e-12)


def examples(letters: torch.Tensor, table: torch.Tensor, rows: torch.Tensor):
    """Every (peptide, charge) of ``rows``: letters (E, L), charges (E,), target shares (E, 2, L - 1)."""
    index = rows.repeat_interleave(len(CHARGES))
    charge = torch.tensor(CHARGES, device=rows.device).repeat(len(rows))
    length = letters.shape[1]
    target = table[index, charge - 1, :, :length - 1].float()
    return letters[index], charge, target / target.sum((1, 2), keepdim=True).clamp_min(1e-12)


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=256, help="peptides per step (each at charges 2-4)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-save", action="store_true", help="write no weights (and no results)")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    peptides, slots = preset_peptides()
    table = load_intensities(peptides, CHARGES, slots).to(device)
    letters = intensity_model.encode(peptides, slots + 1).to(device)
    test = torch.tensor([held_out(p) for p in peptides], device=device)
    train_rows, test_rows = (~test).nonzero()[:, 0], test.nonzero()[:, 0]
    model = intensity_model.IntensityModel().to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
    g = torch.Generator(device=device).manual_seed(args.seed)
    start = time.perf_counter()
    losses = []
    for step in range(args.steps):
        rows = train_rows[torch.randint(len(train_rows), (args.batch,), generator=g, device=device)]
        x, z, target = examples(letters, table, rows)
        log_shares = intensity_model.log_distribution(model(x, z))
        loss = -torch.where(target > 0, target * log_shares, 0.0).sum((1, 2)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.detach())
        if step % 1000 == 0:
            print(f"step {step}: loss {float(torch.stack(losses[-100:]).mean()):.4f}", flush=True)
    final_loss = float(torch.stack(losses[-100:]).mean())
    seconds = time.perf_counter() - start
    model.eval()
    correlations = []
    with torch.no_grad():
        for chunk in test_rows.split(2048):
            x, z, target = examples(letters, table, chunk)
            correlations.append(pearson_sqrt(intensity_model.log_distribution(model(x, z)), target).view(-1, 3))
    r = torch.cat(correlations)
    per_charge = {z: float(r[:, i].median()) for i, z in enumerate(CHARGES)}
    results = {"environment": describe(device), "steps": args.steps, "batch": args.batch,
               "lr": args.lr, "seed": args.seed, "train_peptides": len(train_rows), "test_peptides": len(test_rows),
               "parameters": sum(p.numel() for p in model.parameters()), "train_seconds": seconds,
               "final_loss": final_loss, "median_pearson": float(r.median()),
               "mean_pearson": float(r.mean()), "median_pearson_by_charge": per_charge}
    print({k: v for k, v in results.items() if k != "environment"})
    if args.no_save:
        return Path("-")
    intensity_model.save(model.cpu(), intensity_model.DEFAULT_WEIGHTS, results)
    env = results["environment"]
    markdown = "\n".join([
        f"# ms2pip's intensities distilled into the package's model ({env['device']})", "",
        f"{env['date']}; torch {env['torch']}. Command: `python -m benchmarks.training.intensity_distill "
        f"--device {args.device} --steps {args.steps} --batch {args.batch}` (seed {args.seed}). {results['parameters']:,} parameters; {args.steps} steps of "
        f"{args.batch} peptides x charges 2-4 from {len(train_rows):,} training peptides in {seconds:.0f} s.", "",
        f"On {len(test_rows):,} held-out peptides (x 3 charges), the Pearson correlation of the square-rooted "
        f"b/y shares with ms2pip's: median **{results['median_pearson']:.3f}**, mean {results['mean_pearson']:.3f}; "
        "median by charge " + ", ".join(f"{z}+: {v:.3f}" for z, v in per_charge.items()) + ".", ""])
    folder = Path(args.results) / ("cpu" if device.type == "cpu" else slug(env["device"]))
    return save_results(folder, "intensity_distill", results, markdown)


if __name__ == "__main__":
    print(main())
