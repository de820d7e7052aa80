import os

import torch

# Without a GPU the Triton kernels run under the interpreter on CPU tensors; this
# must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402

from peptide_losses.paths import DATA_ENV, real_spectra_path

#: The de novo tools the integration tests drive. They cannot share one environment
#: (casanovo 5.2.1 pins numpy < 2, instanovo 1.2.2 needs numpy >= 2).
INTEGRATIONS = ("casanovo", "instanovo")
#: Comma-separated tools that must be installed (a missing one fails its tests);
#: unset, CI requires all of INTEGRATIONS and a developer none.
REQUIRE_ENV = "PEPTIDE_LOSSES_REQUIRE"


def optional_package(name: str):
    """Import ``name``; if absent, skip, or fail where it is required (CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        listed = os.environ.get(REQUIRE_ENV)
        required = INTEGRATIONS if listed is None and os.environ.get("CI") else (listed or "").split(",")
        if name in required:
            pytest.fail(f"{name} is required here ({REQUIRE_ENV}={listed!r}, CI={os.environ.get('CI')!r}): {error}")
        pytest.skip(f"{name} is not installed (pip install -e '.[{name}]')")


@pytest.fixture(scope="session")
def casanovo():
    return optional_package("casanovo")


@pytest.fixture(scope="session")
def instanovo():
    return optional_package("instanovo")


@pytest.fixture(scope="session")
def real_mgf():
    """Path of the shared real spectra: skipped outside the project's home, an error in CI."""
    path = real_spectra_path()
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data: {path} is missing (set {DATA_ENV})")
        pytest.skip(f"shared data not found at {path} (set {DATA_ENV} to its folder)")
    return path
