"""Where the project's shared data lives (real spectra for tests and evaluation)."""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming the folder with the shared data files.
DATA_ENV = "PEPTIDE_LOSSES_DATA"
#: 128 real annotated spectra from Casanovo's sample data (Apache-2.0).
REAL_SPECTRA = "casanovo_sample_preprocessed_spectra.mgf"


def shared_data_dir() -> Path:
    """``$PEPTIDE_LOSSES_DATA``, else ``../shared/data`` beside the source tree or the cwd."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        candidate = root.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    return Path.cwd().parent / "shared" / "data"


def real_spectra_path() -> Path:
    """Path of the real annotated MGF (may not exist outside the project's home)."""
    return shared_data_dir() / REAL_SPECTRA
