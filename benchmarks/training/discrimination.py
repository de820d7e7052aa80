"""How often the spectrum matching loss prefers the true peptide over a decoy.

For every annotated spectrum and every decoy of its peptide, a "win" is
``loss(true peptide) < loss(decoy)`` (a tie is not a win). Losses use the
pyteomics-consistent b/y ions at charges 1 and 2 of the known sequence (masses
from :meth:`Vocabulary.residue_masses`, N-terminal modification folded in) and
the reference implementation. Decoy kinds:

- ``shuffled``: the residues permuted, the C-terminal residue (K/R after
  trypsin) and any N-terminal modification kept in place;
- ``substitution``: one residue replaced by another of a different mass;
- ``random``: residues drawn uniformly from the vocabulary, same length.

Run ``python -m benchmarks.training.discrimination`` (CPU, about a minute): it prints a
Markdown table of win rates per option and decoy kind and writes it to
``benchmarks/results/discrimination.md``.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Iterator, Sequence

import torch

from peptide_losses import Vocabulary, spectrum_matching_loss
from peptide_losses.datasets import CASANOVO_SAMPLE
from peptide_losses.reference import DIRECTIONS, DISTANCES
from peptide_losses.spectra import read_mgf

from ..environment import RESULTS_ROOT

DECOY_KINDS = ("shuffled", "substitution", "random")
#: distance_scale values tried, in Da.
TAUS_DA = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
#: Da -> ppm at a typical fragment m/z of 1000, so that 0.02 Da pairs with 20 ppm.
PPM_PER_DA = 1e6 / 1000.0
#: A substitute within this many Da of the original residue (I/L, N[Deamidated]/D,
#: Q[Deamidated]/E) gives the same ions: no loss can tell them apart.
MIN_SUBSTITUTION_DELTA = 0.01
#: Re-draws before giving up on a shuffle that differs from the original.
SHUFFLE_TRIES = 100
#: Rows per loss evaluation: bounds the (rows, N, M) distance tensor of the reference.
CHUNK_ROWS = 512
RESULTS = RESULTS_ROOT / "discrimination.md"


# ---------------------------------------------------------------- decoys
def residue_alphabet(vocabulary: Vocabulary) -> list[int]:
    """Indices of the tokens a decoy may draw: every residue, modified or not (no padding, no N-terminal mod)."""
    return [i for i, t in enumerate(vocabulary.tokens) if i and not vocabulary.is_n_terminal(t)]


def _split_n_terminal(peptide: Sequence[int], vocabulary: Vocabulary) -> tuple[list[int], list[int]]:
    """(N-terminal modification as a 0- or 1-element list, residues)."""
    peptide = list(peptide)
    if peptide and vocabulary.is_n_terminal(vocabulary.tokens[peptide[0]]):
        return peptide[:1], peptide[1:]
    return [], peptide


def shuffled_decoy(peptide: Sequence[int], vocabulary: Vocabulary, rng: random.Random) -> list[int] | None:
    """The residues but the C-terminal one permuted; None if no permutation changes the masses."""
    head, residues = _split_n_terminal(peptide, vocabulary)
    original = [vocabulary.masses[i] for i in residues]
    middle = residues[:-1]
    for _ in range(SHUFFLE_TRIES):
        rng.shuffle(middle)
        decoy = middle + residues[-1:]
        if [vocabulary.masses[i] for i in decoy] != original:
            return head + decoy
    return None


def substitution_decoy(peptide: Sequence[int], vocabulary: Vocabulary, rng: random.Random) -> list[int]:
    """One residue replaced by an alphabet residue whose mass differs by > MIN_SUBSTITUTION_DELTA."""
    head, residues = _split_n_terminal(peptide, vocabulary)
    position = rng.randrange(len(residues))
    old = vocabulary.masses[residues[position]]
    choices = [i for i in residue_alphabet(vocabulary) if abs(vocabulary.masses[i] - old) > MIN_SUBSTITUTION_DELTA]
    residues[position] = rng.choice(choices)
    return head + residues


def random_decoy(peptide: Sequence[int], vocabulary: Vocabulary, rng: random.Random) -> list[int]:
    """As many residues as the peptide, drawn uniformly from the alphabet (no N-terminal mod)."""
    _, residues = _split_n_terminal(peptide, vocabulary)
    alphabet = residue_alphabet(vocabulary)
    return [rng.choice(alphabet) for _ in residues]


DECOYS = {"shuffled": shuffled_decoy, "substitution": substitution_decoy, "random": random_decoy}


def make_decoys(
    peptides: Sequence[Sequence[int]], vocabulary: Vocabulary, kind: str, per_peptide: int, seed: int = 0
) -> list[list[list[int]]]:
    """``per_peptide`` decoys of ``kind`` for each peptide (token indices), reproducible from ``seed``.

    A peptide whose shuffles all equal it gets fewer (possibly no) decoys.
    """
    rng = random.Random(f"{seed}-{kind}")
    out = []
    for peptide in peptides:
        decoys = (DECOYS[kind](peptide, vocabulary, rng) for _ in range(per_peptide))
        out.append([d for d in decoys if d is not None])
    return out


# ---------------------------------------------------------------- losses
def option_grid() -> Iterator[dict]:
    """Every direction x distance x distance_scale (None, then TAUS_DA in that unit)."""
    for direction in DIRECTIONS:
        for distance in DISTANCES:
            unit = 1.0 if distance == "da" else PPM_PER_DA
            for tau in (None, *(t * unit for t in TAUS_DA)):
                yield dict(direction=direction, distance=distance, distance_scale=tau)


def option_label(options: dict) -> str:
    unit = "Da" if options["distance"] == "da" else "ppm"
    tau = options["distance_scale"]
    return f"{options['direction']}, {unit}, " + ("plain" if tau is None else f"tau={tau:g} {unit}")


def _padded(rows: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, max length) float64 tensor, zero-padded, and its bool mask."""
    width = max((len(r) for r in rows), default=0)
    values = torch.zeros(len(rows), width, dtype=torch.float64)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for b, r in enumerate(rows):
        values[b, : len(r)] = torch.as_tensor(r, dtype=torch.float64)
        mask[b, : len(r)] = True
    return values, mask


def match_losses(
    peptides: Sequence[Sequence[int]], spectra: Sequence, vocabulary: Vocabulary, **options
) -> torch.Tensor:
    """Spectrum matching loss (len(peptides),) of each peptide (token indices) against its spectrum.

    ``spectra[i]`` has ``mz`` and ``intensity`` arrays; b/y ions at charges 1-2,
    reduction "none", backend "reference"; ``options`` as the loss's keywords.
    """
    losses = []
    for start in range(0, len(peptides), CHUNK_ROWS):
        chunk = slice(start, start + CHUNK_ROWS)
        masses, mask = _padded([vocabulary.residue_masses(p) for p in peptides[chunk]])
        mz, peak_mask = _padded([s.mz for s in spectra[chunk]])
        intensity, _ = _padded([s.intensity for s in spectra[chunk]])
        losses.append(spectrum_matching_loss(
            None, mz, intensity, residue_masses=masses, mask=mask, peak_mask=peak_mask,
            ion_types=("b", "y"), charges=(1, 2), reduction="none", backend="reference", **options,
        ))
    return torch.cat(losses)


def win_rate(
    spectra: Sequence, peptides: Sequence[Sequence[int]], decoys: Sequence[Sequence[Sequence[int]]],
    vocabulary: Vocabulary, **options,
) -> float:
    """Share of (spectrum, decoy) pairs where the true peptide has the strictly lower loss.

    ``decoys[i]`` are the decoys of ``peptides[i]``, the annotation of ``spectra[i]``.
    """
    truth = match_losses(peptides, spectra, vocabulary, **options)
    owner = [i for i, ds in enumerate(decoys) for _ in ds]
    decoy = match_losses([d for ds in decoys for d in ds], [spectra[i] for i in owner], vocabulary, **options)
    return float((truth[owner] < decoy).double().mean())


# ---------------------------------------------------------------- real data
def load_real_spectra(path: Path | None = None, vocabulary: Vocabulary | None = None):
    """(spectra, peptides as token-index lists) of an annotated MGF, peaks as in the file."""
    vocabulary = vocabulary or Vocabulary.default()
    spectra = read_mgf(path or CASANOVO_SAMPLE, vocabulary)
    return spectra, [s.tokens for s in spectra]


def win_rate_table(spectra, peptides, vocabulary: Vocabulary, per_peptide: int, seed: int) -> str:
    """Markdown table: one row per option of :func:`option_grid`, one column per decoy kind."""
    decoys = {kind: make_decoys(peptides, vocabulary, kind, per_peptide, seed) for kind in DECOY_KINDS}
    pairs = {kind: sum(map(len, d)) for kind, d in decoys.items()}
    lines = [
        "| option | " + " | ".join(f"vs {k} ({pairs[k]} pairs)" for k in DECOY_KINDS) + " |",
        "|---|" + "---:|" * len(DECOY_KINDS),
    ]
    for options in option_grid():
        rates = [win_rate(spectra, peptides, decoys[k], vocabulary, **options) for k in DECOY_KINDS]
        lines.append(f"| {option_label(options)} | " + " | ".join(f"{100 * r:.1f} %" for r in rates) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mgf", type=Path, default=None, help="annotated MGF (default: the shared real spectra)")
    parser.add_argument("--decoys", type=int, default=5, help="decoys per spectrum and kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    vocabulary = Vocabulary.default()
    start = time.perf_counter()
    spectra, peptides = load_real_spectra(args.mgf, vocabulary)
    table = win_rate_table(spectra, peptides, vocabulary, args.decoys, args.seed)
    text = (
        f"# Spectrum matching loss: true peptide vs decoys\n\n"
        f"{len(spectra)} spectra from `{(args.mgf or CASANOVO_SAMPLE).name}`, b/y ions at charges 1-2, "
        f"{args.decoys} decoys per spectrum and kind (seed {args.seed}); win = loss(true) < loss(decoy), "
        f"ties count as losses. ppm taus are the Da taus at m/z 1000.\n\n{table}\n"
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"written to {args.out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
