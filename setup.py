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
    packages=["peptide_losses", "peptide_losses.kernels", "peptide_losses.train", "peptide_losses.integrations"],
    package_dir={"peptide_losses": "peptide_losses", "peptide_losses.kernels": "kernels"},
    package_data={"peptide_losses.train": ["*.txt", "*.json", "*.toml", "presets/*.json"]},
    install_requires=["torch>=2.4", "triton>=3.2", "numpy", "pyteomics"],
    extras_require={
        "test": ["pytest", "hypothesis"],
        "train": ["tqdm", "matplotlib", "tensorboard"],
        "bench": ["tqdm", "matplotlib"],
        # pyarrow 22 needs numpy 2, which casanovo 5.2.1 excludes.
        "casanovo": ["casanovo==5.2.1", "pyarrow<22"],
        # numpy >= 2: cannot share an environment with casanovo 5.2.1.
        "instanovo": ["instanovo==1.2.2"],
    },
)
