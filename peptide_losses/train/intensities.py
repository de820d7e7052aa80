"""b/y fragment intensities predicted by ms2pip for the simulator, computed once and cached on disk.

The simulator's own intensity shape (y twice b, peaking mid-peptide) correlates
poorly with real spectra (median Pearson 0.32 on the shared real spectra, against
0.79 for ms2pip: ``benchmarks/training/intensity_model.py``). ms2pip 4.1.2 ships its
HCD2019 model inside the wheel and predicts offline; it is an optional extra
(``pip install -e ".[simulate]"``, about 1.6 GB with xgboost, pyarrow and pandas).
Without it the trainer works as before, and a cache file made elsewhere is
read without ms2pip.

A table holds, for each peptide and precursor charge, the linear intensities of
the b and y ion of each cleavage slot (slot l: b_{l+1} and its complement
y_{n-l-1}, fragment charge 1), scaled so that the b and y intensities of a
spectrum sum to 1. Residues are passed unmodified: the simulator's oxidised
methionines get the intensities of their plain peptide.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch

#: The ms2pip model: compiled into ms2pip 4.1.2 (``"HCD"``, HCD2021, downloads at run time).
MODEL = "HCD2019"
#: The pinned version, part of each cache file's name.
MS2PIP_VERSION = "4.1.2"
#: Peptides per ms2pip call (one process: a second one measured no faster).
CHUNK = 5000


def cache_directory() -> Path:
    """``$PEPTIDE_LOSSES_CACHE``, else ``~/.cache/peptide_losses``."""
    return Path(os.environ.get("PEPTIDE_LOSSES_CACHE") or Path.home() / ".cache" / "peptide_losses")


def cache_file(peptides: list[str], charges: list[int], slots: int, directory: Path) -> Path:
    """The cache file of these peptides (in this order), charges and slot count."""
    key = "\n".join(peptides) + f"\ncharges={charges}\nslots={slots}\n{MODEL}\n{MS2PIP_VERSION}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return directory / f"ms2pip-{MODEL}-{len(peptides)}-{digest}.npy"


def ms2pip_predictor():
    """A function ``[(peptidoform, charge), ...] -> [{"b": array, "y": array} or None, ...]``
    (ms2pip's log2(I + 0.001), b[k] / y[k] the ion of k + 1 residues), in input order.

    ImportError naming the extra when ms2pip is missing.
    """
    try:
        from ms2pip.core import predict_batch
        from psm_utils import PSM, PSMList
    except ImportError as error:
        raise ImportError(
            "simulation.<split>.intensities = \"ms2pip\" needs ms2pip: pip install -e \".[simulate]\" "
            f"(ms2pip=={MS2PIP_VERSION}), or point PEPTIDE_LOSSES_CACHE at a folder holding the cache file"
        ) from error

    def predict(items):
        psms = PSMList(psm_list=[PSM(peptidoform=f"{p}/{z}", spectrum_id=str(i)) for i, (p, z) in enumerate(items)])
        out = [None] * len(items)
        # One process: ms2pip's C module is not thread-safe, and more processes were no faster.
        for result in predict_batch(psms, model=MODEL, processes=1):
            out[int(result.psm.spectrum_id)] = result.predicted_intensity
        return out

    return predict


def predict(peptides: list[str], charges: list[int], slots: int, progress: bool = False) -> np.ndarray:
    """(P, max(charges), 2, slots) float16 linear b/y intensities (index charge - 1; charges
    not asked for stay 0), each (peptide, charge) summing to 1 over its b and y ions."""
    from tqdm.auto import tqdm

    predictor = ms2pip_predictor()
    table = np.zeros((len(peptides), max(charges), 2, slots), dtype=np.float16)
    for start in tqdm(range(0, len(peptides), CHUNK), desc="ms2pip", disable=not progress):
        items = [(p, z) for p in peptides[start : start + CHUNK] for z in charges]
        for (peptide, z), row, predicted in zip(items, np.repeat(np.arange(start, start + CHUNK), len(charges)),
                                                predictor(items)):
            if predicted is None:
                # ms2pip returns None instead of raising for a peptide it cannot take.
                raise ValueError(f"ms2pip predicted no intensities for {peptide}/{z}")
            b, y = (np.clip(np.exp2(predicted[ion]) - 0.001, 0, None) for ion in ("b", "y"))
            total = max(float(b.sum() + y.sum()), np.finfo(np.float32).tiny)
            n = len(peptide)
            table[row, z - 1, 0, : n - 1] = b / total
            table[row, z - 1, 1, : n - 1] = y[::-1] / total
    return table


def load_intensities(peptides: list[str], charges: list[int], slots: int, directory: Path | None = None,
                     progress: bool = False) -> torch.Tensor:
    """The table of :func:`predict` from its cache file, predicted and written first if missing.

    The file depends only on the arguments (the same peptides, in the same
    order, give the same file), and is written atomically.
    """
    directory = cache_directory() if directory is None else Path(directory)
    path = cache_file(peptides, charges, slots, directory)
    if not path.is_file():
        table = predict(peptides, charges, slots, progress)
        directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npy")
        np.save(partial, table)
        partial.replace(path)
    return torch.from_numpy(np.load(path))
