from pathlib import Path

from setuptools import setup

setup(
    name="peptide_losses",
    version="0.1.0",
    description="Fused Triton kernels for mass-aware de novo peptide sequencing losses",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # kernels/ ships inside the package so nothing called plain `kernels` lands in site-packages.
    packages=["peptide_losses", "peptide_losses.kernels", "peptide_losses.ops", "peptide_losses.train",
              "peptide_losses.integrations", "peptide_losses.cli"],
    package_dir={"peptide_losses": "peptide_losses", "peptide_losses.kernels": "kernels"},
    # The real evaluation sets and the checkpoint that `peptide-losses sequence` uses by default.
    package_data={"peptide_losses.train": ["*.txt", "*.json", "*.toml", "presets/*.json"],
                  "peptide_losses": ["data/*", "data/proteomes/*", "checkpoints/*"]},
    entry_points={"console_scripts": ["peptide-losses = peptide_losses.cli:main"]},
    # Triton publishes Linux wheels only; elsewhere the reference backend needs nothing but torch.
    # tqdm: the command line's progress bars.
    install_requires=["torch>=2.4", 'triton>=3.2; platform_system == "Linux"', "numpy", "pyteomics", "tqdm"],
    extras_require={
        # Capped below the next major: even pytest 9.2 changed what approx accepts. The trainer's
        # and the benchmarks' tests need tqdm and matplotlib.
        # psims: the mzML reader's tests run, never skip.
        "test": ["pytest>=8,<10", "hypothesis>=6,<7", "tqdm", "matplotlib", "psims"],
        # pyteomics reads mzML with psims (its controlled vocabulary, offline) and lxml (23 MB together).
        "mzml": ["psims"],
        "train": ["tqdm", "matplotlib", "tensorboard"],
        # ms2pip 4.1.2 ships the HCD2019 model in its wheel (4.2 downloads models at run time).
        "simulate": ["ms2pip==4.1.2", "tqdm"],
        "bench": ["tqdm", "matplotlib"],
        # pyarrow 22 needs numpy 2, which casanovo 5.2.1 excludes.
        "casanovo": ["casanovo==5.2.1", "pyarrow<22"],
        # numpy >= 2: cannot share an environment with casanovo 5.2.1.
        "instanovo": ["instanovo==1.2.2"],
        # The trainer's optional run logging (logging.wandb in its config); tested offline.
        "wandb": ["wandb==0.31.0"],
    },
)
