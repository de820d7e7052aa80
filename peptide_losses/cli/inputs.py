"""The commands' inputs: a spectra file or a shipped real set, read and preprocessed as the model was trained."""

from __future__ import annotations

from pathlib import Path

from ..checks import BACKENDS
from ..datasets import REAL_SETS, real_set
from ..spectra import Preprocessing
from ..spectra_files import Indexed, annotate, read_spectra
from ..vocabulary import Vocabulary

SPECTRA_HELP = f"an MGF or mzML file, or a real set shipped with the package: {', '.join(REAL_SETS)}"


def add_backend_argument(p) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="spectrum scorer: the Triton kernel (GPU) or the plain PyTorch reference (default: auto)")


#: Every command's options that name a file to write.
OUTPUTS = {"output": "-o", "json": "--json", "plot": "--plot"}


def check_outputs(args) -> None:
    """FileNotFoundError for an output whose folder does not exist, before any work (not after decoding)."""
    for name, option in OUTPUTS.items():
        path = getattr(args, name, None)
        if path is not None and not Path(path).absolute().parent.is_dir():
            raise FileNotFoundError(f"{option} {path}: no folder {Path(path).absolute().parent} to write it in")


def spectra_path(source: str) -> Path:
    """The file behind ``source``: a shipped set's MGF, or the path itself if it is a file."""
    if source in REAL_SETS:
        return REAL_SETS[source].mgf
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file, and not a shipped set ({', '.join(REAL_SETS)})")
    return path


def read_input(source: str, vocabulary: Vocabulary, peprec: str | None = None) -> list[Indexed]:
    """The spectra of ``source`` (annotated from ``peprec`` if given), preprocessed by
    :class:`~peptide_losses.spectra.Preprocessing`'s defaults, the model's training preprocessing."""
    preprocessing = Preprocessing()
    if source in REAL_SETS:
        if peprec is not None:
            raise ValueError(f"{source} is a shipped set, annotated already: drop --peprec")
        return real_set(source, vocabulary, preprocessing)
    spectra = read_spectra(spectra_path(source), vocabulary, preprocessing)
    return annotate(spectra, peprec, vocabulary, source) if peprec is not None else spectra
