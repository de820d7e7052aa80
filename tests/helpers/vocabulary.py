"""The default vocabulary from pyteomics alone, written independently of the library's tables, and peptide strategies."""

from __future__ import annotations

from hypothesis import strategies as st
from pyteomics import mass

from peptide_losses import Vocabulary
from peptide_losses.vocabulary import RESIDUE_MASSES

DEFAULT = Vocabulary.default()

# Unimod compositions, written here independently of the library's own table.
UNIMOD_COMPOSITIONS = {
    "Carbamidomethyl": "H3C2NO",
    "Oxidation": "O",
    "Deamidated": "H-1N-1O",
    "Acetyl": "H2C2O",
    "Carbamyl": "HCNO",
    "Ammonia-loss": "H-3N-1",
}


def unimod_delta(name: str) -> float:
    return mass.calculate_mass(formula=UNIMOD_COMPOSITIONS[name])


def pyteomics_token_masses() -> dict[str, float]:
    """Mass (Da) of every default token from pyteomics alone: an ``aa_mass`` table for ``fast_mass``."""
    masses = {r: mass.std_aa_mass[r] for r in RESIDUE_MASSES}
    for token in ("C[Carbamidomethyl]", "M[Oxidation]", "N[Deamidated]", "Q[Deamidated]"):
        masses[token] = mass.std_aa_mass[token[0]] + unimod_delta(token[2:-1])
    for token in ("[Acetyl]-", "[Carbamyl]-", "[Ammonia-loss]-"):
        masses[token] = unimod_delta(token[1:-2])
    # Casanovo's carbamylation + ammonia loss token carries its mass in its name.
    masses["[+25.980265]-"] = 25.980265
    return masses


def peptides(vocabulary: Vocabulary = DEFAULT, min_size: int = 2, max_size: int = 30):
    """Token lists: an optional N-terminal modification, then residues (modified or not)."""
    residues = [t for t in vocabulary.tokens[1:] if not vocabulary.is_n_terminal(t)]
    n_terminal = [t for t in vocabulary.tokens[1:] if vocabulary.is_n_terminal(t)]
    return st.tuples(
        st.lists(st.sampled_from(n_terminal), max_size=1),
        st.lists(st.sampled_from(residues), min_size=min_size, max_size=max_size),
    ).map(lambda parts: parts[0] + parts[1])
