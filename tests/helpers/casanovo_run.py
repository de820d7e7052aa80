"""An mzTab that Casanovo itself writes: ``casanovo sequence`` with a tiny random-weight model, offline.

``casanovo_mztab(workdir, mgf)`` writes in ``workdir``:

- ``casanovo.yaml``: Casanovo's own default config (read from the installed package) with a
  tiny architecture (dim_model 16, 2 heads, feed-forward 16, 1 layer), ``n_beams`` and
  ``top_match``, the CPU, and a small ``max_peptide_len`` / ``predict_batch_size``;
  everything else (min_peaks, m/z range, residues, min_peptide_len, ...) is Casanovo's default.
- ``random.ckpt``: a Lightning checkpoint of a ``Spec2Pep`` of that size, random weights
  drawn under ``torch.manual_seed(seed)`` (``SEED``), with the tokenizer ``casanovo sequence`` builds from
  that config. One change to the random weights: the stop token's output bias is raised by
  ``STOP_BIAS``, so that beams stop within ``max_peptide_len`` (Casanovo drops a beam that
  never stops) and each spectrum keeps several finished candidates.
- ``spectra.mgf`` (only with ``n_spectra``): the first ``n_spectra`` spectra, copied verbatim.
- ``cache/``: the subprocess's ``XDG_CACHE_HOME``. Casanovo writes each PSM's modifications
  through spectrum_utils' ProForma parser, which looks named modifications (``C[Carbamidomethyl]``,
  ``M[Oxidation]``, ...) up in UNIMOD, downloading unimod.obo on first use; offline that
  raises and Casanovo exits 1 with an mzTab of metadata and no PSM rows. The cache is seeded with spectrum_utils' own pickle
  format of the UNIMOD terms, read from the UNIMOD tables that psims (a depthcharge
  dependency, so in Casanovo's environment) vendors: name and accession to monoisotopic mass.
  The real user's cache and Casanovo's model cache are not touched.

then runs ``python -m casanovo.casanovo sequence MGF --model random.ckpt --config casanovo.yaml
--output_dir workdir --output_root casanovo --force_overwrite --verbosity warning`` in the same interpreter and
returns ``workdir / "casanovo.mztab"`` (``casanovo.casanovo:main`` is the ``casanovo`` console
script's entry point; the package has no ``__main__``). Runs only where casanovo is installed.
"""

from __future__ import annotations

import datetime
import gzip
import os
import pickle
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

#: Added to the stop token's output bias of the random decoder (see the module docstring).
STOP_BIAS = 2.0
#: The torch seed of the random weights: of seeds 0-4 on the first 8 sample spectra (top_match 3), the
#: one whose every spectrum keeps 3 distinct PSMs with varied residues and modifications (0: only
#: N[Deamidated] runs; 2 and 3: some spectra keep fewer than 3 PSMs or none).
SEED = 4
TINY = dict(dim_model=16, n_head=2, dim_feedforward=16, n_layers=1)
OUTPUT_ROOT = "casanovo"


def casanovo_mztab(workdir: Path, mgf: Path, top_match: int = 3, n_spectra: int | None = None, *,
                   n_beams: int | None = None, seed: int = SEED, max_peptide_len: int = 20,
                   timeout: float = 300) -> Path:
    """Run ``casanovo sequence`` on ``mgf`` (its first ``n_spectra`` spectra if given) with a tiny
    random-weight model keeping ``top_match`` PSMs per spectrum; return the mzTab it wrote.

    ``n_beams`` defaults to ``2 * top_match`` (Casanovo keeps the ``top_match`` best of the
    ``n_beams`` finished beams, so a spectrum may keep fewer than ``top_match`` PSMs, or none).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n_beams = max(2 * top_match, 2) if n_beams is None else n_beams
    if n_beams < top_match:
        raise ValueError(f"n_beams ({n_beams}) must be >= top_match ({top_match})")
    if n_spectra is not None:
        mgf = first_spectra(mgf, workdir / "spectra.mgf", n_spectra)
    config = write_config(workdir / "casanovo.yaml", top_match=top_match, n_beams=n_beams,
                          max_peptide_len=max_peptide_len)
    model = random_checkpoint(workdir / "random.ckpt", config, seed=seed)
    cache = seed_unimod_cache(workdir / "cache")
    env = dict(os.environ, XDG_CACHE_HOME=str(cache))
    subprocess.run([sys.executable, "-m", "casanovo.casanovo", *casanovo_args(mgf, model, config, workdir)],
                   check=True, env=env, cwd=workdir, timeout=timeout)
    mztab = workdir / f"{OUTPUT_ROOT}.mztab"
    if not mztab.is_file():
        raise FileNotFoundError(f"casanovo sequence wrote no {mztab}")
    return mztab


def casanovo_args(mgf: Path, model: Path, config: Path, workdir: Path) -> list[str]:
    """The ``casanovo`` command line (after ``python -m casanovo.casanovo``)."""
    return ["sequence", str(mgf), "--model", str(model), "--config", str(config), "--output_dir", str(workdir),
            "--output_root", OUTPUT_ROOT, "--force_overwrite", "--verbosity", "warning"]


def first_spectra(mgf: Path, out: Path, n: int) -> Path:
    """Copy the first ``n`` spectra (``BEGIN IONS`` ... ``END IONS`` blocks, and what precedes them) verbatim."""
    if n < 1:
        raise ValueError(f"n_spectra must be >= 1, got {n}")
    lines, seen = [], 0
    with open(mgf, newline="") as handle:
        for line in handle:
            lines.append(line)
            if line.strip().upper() == "END IONS":
                seen += 1
                if seen == n:
                    break
    if seen < n:
        raise ValueError(f"{mgf} holds {seen} spectra, fewer than {n}")
    with open(out, "w", newline="") as handle:
        handle.writelines(lines)
    return out


def write_config(path: Path, *, top_match: int, n_beams: int, max_peptide_len: int) -> Path:
    """Casanovo's default config from the installed package, with the tiny model and these decoding settings."""
    import yaml
    from casanovo.config import Config

    with open(Config._default_config) as handle:
        params = yaml.safe_load(handle)
    params.update(TINY, top_match=top_match, n_beams=n_beams, max_peptide_len=max_peptide_len,
                  accelerator="cpu", devices=1, predict_batch_size=64)
    with open(path, "w") as handle:
        yaml.safe_dump(params, handle, sort_keys=False)
    return path


def random_checkpoint(path: Path, config: Path, *, seed: int) -> Path:
    """A Lightning checkpoint (``Trainer.save_checkpoint``) of a random ``Spec2Pep`` of the config's size: what
    ``casanovo sequence --model`` loads (``Spec2Pep.load_from_checkpoint``, hyperparameters and tokenizer included)."""
    import lightning.pytorch as pl
    import torch
    from casanovo.config import Config
    from casanovo.denovo.model import Spec2Pep
    from casanovo.denovo.model_runner import ModelRunner

    cfg = Config(str(config))
    runner = ModelRunner(cfg)  # no output_dir: writes nothing
    runner.initialize_tokenizer()  # the tokenizer `casanovo sequence` builds from this config
    torch.manual_seed(seed)
    model = Spec2Pep(**{key: cfg[key] for key in TINY}, dropout=cfg.dropout, max_charge=cfg.max_charge,
                     max_peptide_len=cfg.max_peptide_len, min_peptide_len=cfg.min_peptide_len,
                     n_beams=cfg.n_beams, top_match=cfg.top_match, tokenizer=runner.tokenizer)
    with torch.no_grad():
        model.decoder.final.bias[runner.tokenizer.stop_int] += STOP_BIAS
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path, weights_only=True)
    return path


def unimod_terms() -> tuple[dict[str, tuple[float, str]], dict[str, tuple[float, str]]]:
    """UNIMOD as spectrum_utils holds it: accession -> (mono mass, name) and name -> (mono mass, accession),
    from the UNIMOD tables that psims vendors (``ex_code_name`` is the term name of unimod.obo)."""
    import psims.controlled_vocabulary.vendor as vendor

    tables = Path(vendor.__file__).with_name("unimod_tables.xml.gz")
    by_accession, by_name = {}, {}
    with gzip.open(tables) as handle:
        for _, element in ElementTree.iterparse(handle):
            if element.tag.endswith("modifications_row"):
                accession, name = f"UNIMOD:{element.get('record_id')}", element.get("ex_code_name")
                mass = float(element.get("mono_mass"))
                by_accession[accession] = mass, name
                by_name[name] = mass, accession
            element.clear()
    return by_accession, by_name


def seed_unimod_cache(cache: Path) -> Path:
    """An ``XDG_CACHE_HOME`` whose spectrum_utils cache holds UNIMOD (``UNIMOD.pkl``, spectrum_utils' format)."""
    folder = cache / "spectrum_utils"
    folder.mkdir(parents=True, exist_ok=True)
    terms = unimod_terms()
    if "Carbamidomethyl" not in terms[1]:
        raise RuntimeError("psims' vendored UNIMOD tables lack Carbamidomethyl")
    with open(folder / "UNIMOD.pkl", "wb") as handle:
        pickle.dump((terms, datetime.datetime.now(datetime.timezone.utc)), handle, pickle.HIGHEST_PROTOCOL)
    return cache
