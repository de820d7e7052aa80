import os

import torch

# Without a GPU the Triton kernels run under the interpreter on CPU tensors; this
# must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from peptide_losses.paths import DATA_ENV, real_spectra_path


@pytest.fixture(scope="session")
def real_mgf():
    """Path of the shared real spectra: skipped outside the project's home, an error in CI."""
    path = real_spectra_path()
    if not path.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have the shared data: {path} is missing (set {DATA_ENV})")
        pytest.skip(f"shared data not found at {path} (set {DATA_ENV} to its folder)")
    return path
