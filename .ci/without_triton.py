"""CI check of an install without triton (as on macOS / Windows) from a legacy editable install.

Run from outside the checkout, in a venv with torch, numpy and pyteomics but no triton, where the
package was installed with ``pip install --no-deps --no-build-isolation -e .`` under setuptools < 64
(a legacy ``setup.py develop``, which does not map kernels/ to peptide_losses.kernels).
"""

import importlib.util
import sys
from pathlib import Path

import torch

import peptide_losses as pl
import peptide_losses.kernels  # noqa: F401  (the folder the legacy install leaves unmapped)

# The test batches live beside the benchmarks, not in the package: appended, so that the package
# above is still the installed one.
sys.path.append(str(Path(__file__).resolve().parents[1]))
from benchmarks.support.synthetic import make_batch  # noqa: E402

assert importlib.util.find_spec("triton") is None, "this check needs an environment without triton"
batch = make_batch(2, 6, 10, seed=3)
spectrum = pl.spectrum_matching_loss(batch.logits, batch.mz, batch.intensity, masses=batch.masses,
                                     mask=batch.mask, peak_mask=batch.peak_mask)
precursor = pl.precursor_mass_loss(batch.logits, batch.precursor_mz, batch.charge, masses=batch.masses,
                                   mask=batch.mask)
assert torch.isfinite(spectrum) and torch.isfinite(precursor), (spectrum, precursor)
try:
    pl.spectrum_matching_loss(batch.logits, batch.mz, batch.intensity, masses=batch.masses, backend="triton")
except ValueError as error:
    assert "triton is not installed" in str(error), error
else:
    raise AssertionError("backend='triton' without triton did not raise")
print(f"without triton: reference losses {spectrum:.4f} Da and {precursor:.2f}; backend='triton' refused")
