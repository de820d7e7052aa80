"""The one residue vocabulary shared by the losses, the data code and the trainer.

A token is a residue (``"A"``), a modified residue in bracket notation
(``"M[Oxidation]"``), an N-terminal modification (``"[Acetyl]-"``, or
InstaNovo's ``"[UNIMOD:1]"``) or a named zero-mass special token (a model's
stop or start token, such as Casanovo's ``"$"``). Index 0 is always padding,
with mass 0. Because the loss objects, the MGF reader and the trainer all take
the same :class:`Vocabulary` object, and a logits tensor whose last dimension
differs from ``len(vocabulary)`` is rejected, a dataset and a loss cannot
silently disagree on what an index means. Equal sizes do not make equal
orders: :meth:`Vocabulary.check_tokens` compares the names, index by index,
with a model's own token list.
"""

from __future__ import annotations

import hashlib
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import torch

from .checks import check_integer, check_number, check_sequence
from .constants import H2O, PROTON

PADDING = "<pad>"

#: Monoisotopic residue masses (Da), as in pyteomics' ``std_aa_mass``.
RESIDUE_MASSES: dict[str, float] = {
    "G": 57.02146372057,
    "A": 71.03711378471,
    "S": 87.03202840427,
    "P": 97.05276384885,
    "V": 99.06841391299,
    "T": 101.04767846841,
    "C": 103.00918478471,
    "L": 113.08406397713,
    "I": 113.08406397713,
    "N": 114.04292744114,
    "D": 115.02694302383,
    "Q": 128.05857750528,
    "K": 128.09496301400,
    "E": 129.04259308797,
    "M": 131.04048491299,
    "H": 137.05891185845,
    "F": 147.06841391299,
    "R": 156.10111102360,
    "Y": 163.06332853255,
    "W": 186.07931294986,
}

#: Unimod monoisotopic mass deltas (Da) with the composition they come from;
#: ``tests/test_vocabulary.py`` recomputes each from its formula with pyteomics.
UNIMOD_DELTAS: dict[str, tuple[float, str]] = {
    "Carbamidomethyl": (57.021463721, "H3C2NO"),  # Unimod 4
    "Oxidation": (15.99491461956, "O"),  # Unimod 35
    "Deamidated": (0.98401558291, "H-1N-1O"),  # Unimod 7
    "Acetyl": (42.01056468403, "H2C2O"),  # Unimod 1
    "Carbamyl": (43.00581365, "HCNO"),  # Unimod 5
    "Ammonia-loss": (-17.02654910101, "H-3N-1"),  # Unimod 385
}

#: The default modified residues and N-terminal modifications (Casanovo's set).
#: ``[+25.980265]-`` is ProForma for "add 25.980265 Da": its mass is the number
#: in its name, as in Casanovo (Carbamyl + Ammonia-loss sums to 25.979265 Da;
#: the 1 mDa difference is Casanovo's convention, kept so labels agree).
DEFAULT_MODIFIED = ("C[Carbamidomethyl]", "M[Oxidation]", "N[Deamidated]", "Q[Deamidated]")
DEFAULT_N_TERMINAL = ("[Acetyl]-", "[Carbamyl]-", "[Ammonia-loss]-", "[+25.980265]-")

# Casanovo writes modifications as mass deltas with three decimals ("M+15.995").
DELTA_TOLERANCE = 0.01

_NUMBER = r"[+-]\d+(?:\.\d*)?"
_N_TERM_BRACKET = re.compile(r"\[([^\[\]]+)\]-")
# A standalone modification is N-terminal; InstaNovo writes it without ProForma's dash.
_N_TERM_TOKEN = re.compile(r"\[[^\[\]]+\]-?")
_N_TERM_DELTAS = re.compile(rf"(?:{_NUMBER})+")
_RESIDUE = re.compile(rf"([A-Z])(?:\[([^\[\]]+)\]|({_NUMBER}))?")


def _parse_delta(text: str) -> float | None:
    """A mass delta such as ``+15.995`` or ``+43.006-17.027`` in Da, else None."""
    parts = re.findall(_NUMBER, text)
    if not parts or "".join(parts) != text:
        return None
    return sum(float(p) for p in parts)


def _modification_mass(name: str) -> float | None:
    """Mass delta (Da) of a bracketed modification: a Unimod name or a number."""
    if name in UNIMOD_DELTAS:
        return UNIMOD_DELTAS[name][0]
    return _parse_delta(name)


def _token_mass(token: str) -> float:
    """Mass of a token in the library's notation from the built-in tables."""
    if token in RESIDUE_MASSES:
        return RESIDUE_MASSES[token]
    nterm = _N_TERM_BRACKET.fullmatch(token)
    if nterm:
        delta = _modification_mass(nterm.group(1))
    else:
        res = re.fullmatch(r"([A-Z])\[([^\[\]]+)\]", token)
        delta = None
        if res and res.group(1) in RESIDUE_MASSES:
            mod = _modification_mass(res.group(2))
            delta = None if mod is None else RESIDUE_MASSES[res.group(1)] + mod
    if delta is None:
        raise ValueError(
            f"token {token!r} has no known mass: give residues and modifications their mass with "
            "Vocabulary.from_masses({token: mass_in_Da, ...}); name a zero-mass stop or start token "
            "in special=(...)"
        )
    return delta


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    # A blocking copy from pageable memory waits for the whole GPU queue; the decoders build these
    # tables once per batch while the previous batch's work may still be queued.
    return t if device is None else t.to(device, non_blocking=True)


def _names(name: str, tokens) -> tuple[str, ...]:
    """``tokens`` as a tuple of token names; TypeError naming ``name`` for a string or a non-string token."""
    names = tuple(check_sequence(name, tokens, "a sequence of token names (str)"))
    for token in names:
        if not isinstance(token, str):
            raise TypeError(f"{name} must be token names (str), got {token!r}")
    return names


@dataclass(frozen=True)
class Vocabulary:
    """Tokens and their monoisotopic masses (Da); index 0 is padding (mass 0).

    Two vocabularies are equal when their tokens, masses and special tokens are
    equal; :attr:`fingerprint` is a short hash of them, to store beside data
    and checkpoints.

    Args:
        tokens: token strings in logit index order, padding first
            (``Vocabulary.PADDING``, or a name listed in ``special``).
        masses: their masses in Da (finite numbers, read as float), 0 for
            padding and special tokens.
        special: zero-mass tokens that are not residues (a model's stop token
            ``"$"`` or ``"[EOS]"``, start token, named padding). They never
            count as peptide positions: :func:`peptide_losses.masks.residue_mask`
            leaves them out, :meth:`decode` skips them.
    """

    tokens: tuple[str, ...]
    masses: tuple[float, ...]
    special: tuple[str, ...] = ()
    _index: dict = field(init=False, repr=False, compare=False, hash=False)

    PADDING = PADDING

    def __post_init__(self) -> None:
        tokens = _names("tokens", self.tokens)
        masses = check_sequence("masses", self.masses, "a sequence of masses in Da")
        if len(tokens) != len(masses):
            raise ValueError(
                f"tokens and masses differ in length ({len(tokens)} vs {len(masses)})"
            )
        masses = tuple(check_number(f"the mass of token {t!r}", m, math.isfinite, "a finite number (Da)")
                       for t, m in zip(tokens, masses))
        special = _names("special", self.special)
        for name, value in (("tokens", tokens), ("masses", masses), ("special", special)):
            object.__setattr__(self, name, value)
        if not self.tokens or self.tokens[0] not in (PADDING, *special) or self.masses[0] != 0.0:
            raise ValueError(
                f"index 0 must be the padding token {PADDING!r} (or a name listed in special) with mass 0"
            )
        if len(set(self.tokens)) != len(self.tokens):
            dup = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise ValueError(f"duplicate tokens: {dup}")
        index = {t: i for i, t in enumerate(self.tokens)}
        for token in special:
            if token not in index:
                raise ValueError(f"special token {token!r} is not among the tokens")
            if self.masses[index[token]] != 0.0:
                raise ValueError(f"special token {token!r} must have mass 0, got {self.masses[index[token]]}")
        for token in self.tokens[1:]:
            if token not in special and not (_RESIDUE.fullmatch(token) or _N_TERM_TOKEN.fullmatch(token)):
                raise ValueError(
                    f"token {token!r} is not a residue 'X', a modified residue 'X[Mod]' "
                    "or an N-terminal modification '[Mod]-': name a zero-mass stop or start "
                    "token in special=(...)"
                )
        object.__setattr__(self, "_index", index)

    # ---------------------------------------------------------------- builders
    @classmethod
    def default(cls) -> "Vocabulary":
        """Casanovo's residue set in this library's own order, not Casanovo's logit order.

        20 residues, 4 modified residues, 4 N-terminal modifications; size 29
        with padding. Order: padding, the 20 residues in ``RESIDUE_MASSES``
        order, ``DEFAULT_MODIFIED``, ``DEFAULT_N_TERMINAL``. A Casanovo model's
        logits are also 29 wide but sorted, with its stop token ``"$"`` at
        index 1 and I folded into L: use :meth:`from_casanovo` for them.
        """
        return cls.from_tokens([*RESIDUE_MASSES, *DEFAULT_MODIFIED, *DEFAULT_N_TERMINAL])

    @classmethod
    def from_tokens(cls, tokens: Iterable[str], special: Iterable[str] = ()) -> "Vocabulary":
        """A vocabulary of the given tokens, masses from the built-in tables.

        Known: the 20 residues, ``X[Name]`` and ``[Name]-`` with a Unimod name
        from ``UNIMOD_DELTAS``, and numeric deltas ``X[+15.995]``, ``[+42.011]-``.
        Tokens named in ``special`` (a stop token ``"$"``, a start token) get
        mass 0 where they stand in ``tokens``. Padding is added at index 0.
        A string is read as its one-letter tokens (``from_tokens("ACDK")``).
        """
        # A string is its one-letter tokens: from_tokens("ACDK").
        tokens = _names("tokens", list(tokens) if isinstance(tokens, str) else tokens)
        special = _names("special", special)
        masses = (0.0 if t in special else _token_mass(t) for t in tokens)
        return cls((PADDING, *tokens), (0.0, *masses), special)

    @classmethod
    def from_masses(cls, masses: Mapping[str, float], special: Iterable[str] = ()) -> "Vocabulary":
        """A custom vocabulary from ``{token: mass_in_Da}`` (padding is added).

        Zero-mass special tokens (stop, start) are listed in the mapping where
        they go, with mass 0, and named in ``special``.
        """
        if not isinstance(masses, Mapping):
            raise TypeError(f"masses must be a mapping {{token: mass_in_Da}}, got {type(masses).__name__}")
        return cls((PADDING, *masses), (0.0, *masses.values()), tuple(special))

    @classmethod
    def from_casanovo(cls, tokenizer) -> "Vocabulary":
        """The vocabulary of a Casanovo model's logits, in their index order.

        Args:
            tokenizer: depthcharge's ``PeptideTokenizer`` (or its MassIVE-KB
                subclass) as found at ``Spec2Pep.tokenizer``. Its
                ``reverse_index`` is the logit order: index 0 padding, then
                the sorted tokens with the stop token ``"$"`` (and a start
                token, if any) among them.

        Masses are the tokenizer's own (``tokenizer.residues``, Da, from the
        Casanovo config), so the losses see what the model was trained on;
        the stop and start tokens are zero-mass special tokens. Casanovo
        writes peptides C- to N-terminus (``tokenizer.reverse``): see
        :func:`peptide_losses.order.n_terminus_first`.
        """
        names = getattr(tokenizer, "reverse_index", None)
        if names is None or not hasattr(tokenizer, "residues"):
            raise TypeError(
                "tokenizer must be depthcharge's PeptideTokenizer (Spec2Pep.tokenizer), with "
                f"reverse_index and residues; got {type(tokenizer).__name__}"
            )
        if names[0] is not None:
            raise ValueError(f"tokenizer.reverse_index[0] must be padding (None), got {names[0]!r}")
        special = tuple(t for t in (tokenizer.start_token, tokenizer.stop_token) if t is not None)
        masses = [0.0 if t in special else float(tokenizer.residues[t]) for t in names[1:]]
        return cls((PADDING, *names[1:]), (0.0, *masses), special)

    @classmethod
    def from_instanovo(cls, residue_set) -> "Vocabulary":
        """The vocabulary of an InstaNovo model's logits, in their index order.

        Args:
            residue_set: InstaNovo's ``ResidueSet`` (``model.residue_set``);
                ``residue_set.vocab`` is the logit order: ``"[PAD]"``,
                ``"[SOS]"``, ``"[EOS]"``, then the residues of its config.

        Masses are the residue set's own (Da). The three special tokens keep
        InstaNovo's names and mass 0; InstaNovo writes N-terminal
        modifications without a dash (``"[UNIMOD:1]"``), which
        :meth:`is_n_terminal` recognises. The InstaNovo transformer writes
        peptides C- to N-terminus, InstaNovo+ (diffusion) N- to C-terminus.
        """
        names = getattr(residue_set, "vocab", None)
        if names is None or not hasattr(residue_set, "special_tokens"):
            raise TypeError(
                "residue_set must be InstaNovo's ResidueSet (model.residue_set), with vocab and "
                f"special_tokens; got {type(residue_set).__name__}"
            )
        special = tuple(residue_set.special_tokens)
        masses = [0.0 if t in special else float(residue_set.residue_masses[t]) for t in names]
        return cls(tuple(names), tuple(masses), special)

    # ---------------------------------------------------------------- lookup
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def index(self, token: str) -> int:
        """Index of ``token``; ``ValueError`` naming it if absent."""
        try:
            return self._index[token]
        except KeyError:
            raise ValueError(f"unknown token {token!r}") from None

    def check_tokens(self, tokens: Sequence[str | None]) -> None:
        """Raise ``ValueError`` unless ``tokens`` names this vocabulary's tokens in order.

        Args:
            tokens: a model's token names in logit index order, e.g.
                ``Spec2Pep.tokenizer.reverse_index`` or InstaNovo's
                ``residue_set.vocab``. Index 0 may be None (depthcharge's
                unnamed padding).

        The error names the first index where the names disagree and both
        names there: equal sizes with another order (``Vocabulary.default()``
        against a Casanovo model) would otherwise give finite, wrong masses.
        """
        tokens = list(tokens)
        for i, (ours, theirs) in enumerate(zip(self.tokens, tokens)):
            if ours != theirs and not (i == 0 and theirs is None):
                raise ValueError(
                    f"vocabulary and model disagree at token index {i}: vocabulary has {ours!r}, "
                    f"model has {theirs!r} (build the vocabulary from the model, e.g. "
                    "Vocabulary.from_casanovo(model.tokenizer))"
                )
        if len(tokens) != len(self.tokens):
            i = min(len(tokens), len(self.tokens))
            raise ValueError(
                f"vocabulary has {len(self.tokens)} tokens, model has {len(tokens)}: they disagree from "
                f"token index {i} on"
            )

    @property
    def fingerprint(self) -> str:
        """12-hex-digit hash of tokens, masses and special tokens: equal iff the vocabularies agree."""
        text = "\n".join(f"{t}\t{m:.9f}" for t, m in zip(self.tokens, self.masses))
        if self.special:
            text += "\nspecial\t" + "\t".join(self.special)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def is_special(self, token: str) -> bool:
        """True for padding and the zero-mass special tokens (stop, start)."""
        return token == self.tokens[0] or token in self.special

    def is_n_terminal(self, token: str) -> bool:
        """True for N-terminal modification tokens such as ``[Acetyl]-`` or ``[UNIMOD:1]``."""
        return not self.is_special(token) and bool(_N_TERM_TOKEN.fullmatch(token))

    def start_only_mask(self, device=None) -> torch.Tensor:
        """(V,) bool, True at the tokens that may only open a peptide (:meth:`is_n_terminal`)."""
        return _to_device(torch.tensor([self.is_n_terminal(token) for token in self.tokens]), device)

    def mass_tensor(self, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
        """Token masses (V,) in Da, the ``masses`` argument of the losses."""
        return _to_device(torch.tensor(self.masses, dtype=dtype), device)

    # ---------------------------------------------------------------- parsing
    def _match_delta(self, residue: str | None, delta: float, text: str, pos: int) -> str:
        """The token whose modification delta is ``delta`` within DELTA_TOLERANCE."""
        for token, mass in zip(self.tokens[1:], self.masses[1:]):
            if residue is None:
                if self.is_n_terminal(token) and abs(mass - delta) <= DELTA_TOLERANCE:
                    return token
            elif token.startswith(residue + "["):
                # The unmodified residue need not be in the vocabulary (e.g. only C[Carbamidomethyl]).
                base = self.masses[self._index[residue]] if residue in self._index else RESIDUE_MASSES.get(residue)
                if base is not None and abs(mass - base - delta) <= DELTA_TOLERANCE:
                    return token
        raise ValueError(f"unknown token {text!r} at position {pos}")

    def tokenize(self, sequence: str) -> list[str]:
        """Split a peptide string into vocabulary tokens.

        Accepts ProForma-like strings (``[Acetyl]-PEPC[Carbamidomethyl]K``,
        ``M[+15.995]``), Casanovo / MassIVE-KB deltas (``+42.011PEPM+15.995``,
        ``+43.006-17.027PEP``) and a leading N-terminal token of the
        vocabulary without a dash (InstaNovo's ``[UNIMOD:1]PEPK``). A token not
        in the vocabulary raises ``ValueError`` naming it and its character position;
        anything but a ``str`` is a ``TypeError``.
        """
        if not isinstance(sequence, str):
            raise TypeError(f"sequence must be a peptide str such as 'PEPTIDEK', got {type(sequence).__name__} "
                            f"{sequence!r}")
        tokens: list[str] = []
        pos = 0
        nterm = _N_TERM_BRACKET.match(sequence)
        token = _N_TERM_TOKEN.match(sequence)
        if token and token.group(0) in self._index and self.is_n_terminal(token.group(0)):
            # InstaNovo joins its beam's tokens with "[UNIMOD:1]" first, without ProForma's dash.
            tokens.append(token.group(0))
            pos = token.end()
        elif nterm:
            name = nterm.group(0)
            if name not in self._index:
                delta = _modification_mass(nterm.group(1))
                if delta is None:
                    raise ValueError(f"unknown token {name!r} at position 0")
                name = self._match_delta(None, delta, name, 0)
            tokens.append(name)
            pos = nterm.end()
        else:
            deltas = _N_TERM_DELTAS.match(sequence)
            if deltas:
                tokens.append(self._match_delta(None, _parse_delta(deltas.group(0)), deltas.group(0), 0))
                pos = deltas.end()
        while pos < len(sequence):
            match = _RESIDUE.match(sequence, pos)
            if not match:
                raise ValueError(f"unknown token {sequence[pos]!r} at position {pos} of {sequence!r}")
            text = match.group(0)
            residue, bracket, number = match.groups()
            if text in self._index:
                tokens.append(text)
            elif bracket is not None and _parse_delta(bracket) is not None:
                tokens.append(self._match_delta(residue, _parse_delta(bracket), text, pos))
            elif number is not None:
                tokens.append(self._match_delta(residue, _parse_delta(number), text, pos))
            else:
                raise ValueError(f"unknown token {text!r} at position {pos} of {sequence!r}")
            pos = match.end()
        return tokens

    def encode(self, sequence: str) -> list[int]:
        """Token indices of a peptide string (see :meth:`tokenize`)."""
        return [self._index[t] for t in self.tokenize(sequence)]

    def _indices(self, indices: Sequence[int] | torch.Tensor, name: str) -> list[int]:
        """Token indices as ints: ``TypeError`` naming an index that is not an integer (2.7, a float
        tensor's 2.0), ``ValueError`` naming one outside the vocabulary, each with its position;
        ``name`` is the argument's."""
        if isinstance(indices, torch.Tensor) and indices.dim() != 1:
            raise ValueError(f"{name} must be one token row (1-D), got shape {tuple(indices.shape)}")
        items = indices.tolist() if isinstance(indices, torch.Tensor) else indices
        out = []
        for pos, i in enumerate(check_sequence(name, items, "a sequence of integer token indices")):
            try:
                index = operator.index(i)
            except TypeError:
                raise TypeError(f"index {i!r} at position {pos} is not an integer token index") from None
            if not 0 <= index < len(self.tokens):
                raise ValueError(f"index {i} at position {pos} is outside the vocabulary (size {len(self)})")
            out.append(index)
        return out

    def decode(self, indices: Sequence[int] | torch.Tensor) -> str:
        """Peptide string of token indices; padding and special tokens are skipped.

        ``ValueError`` naming the index and its position if out of range,
        ``TypeError`` if not an integer.
        """
        return "".join(self.tokens[i] for i in self._indices(indices, "indices") if not self.is_special(self.tokens[i]))

    # ---------------------------------------------------------------- masses
    def residue_masses(self, sequence: str | Sequence[int]) -> list[float]:
        """Per-residue masses (Da) of a known peptide, N-terminal mod folded in.

        The N-terminal modification's delta is added to the first residue, so
        the fragment m/z built from these masses equal pyteomics' b/y ions.
        Padding and special tokens are skipped; indices are checked as :meth:`decode` does.
        """
        if isinstance(sequence, str):
            idx = self.encode(sequence)
        else:
            idx = [i for i in self._indices(sequence, "sequence") if not self.is_special(self.tokens[i])]
        masses = [self.masses[i] for i in idx]
        if idx and self.is_n_terminal(self.tokens[idx[0]]):
            if len(masses) < 2:
                raise ValueError("an N-terminal modification needs a residue after it")
            masses = [masses[0] + masses[1], *masses[2:]]
        return masses

    def peptide_mass(self, sequence: str | Sequence[int]) -> float:
        """Neutral monoisotopic peptide mass (Da): residue sum + H2O; ``ValueError`` for a peptide
        without a residue (its mass would be water's)."""
        masses = self.residue_masses(sequence)
        if not masses:
            raise ValueError(f"sequence {sequence!r} holds no residue: a peptide needs at least one")
        return sum(masses) + H2O

    def precursor_mz(self, sequence: str | Sequence[int], charge: int) -> float:
        """Precursor m/z at ``charge`` (an integer >= 1): (peptide mass + charge * proton) / charge."""
        charge = check_integer("charge", charge, 1)
        return (self.peptide_mass(sequence) + charge * PROTON) / charge
