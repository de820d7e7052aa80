"""The implementations compared, each a function of the batch's tensors returning the loss.

- ``triton``: the package's public functions with ``backend="triton"`` (value
  checks off, as in a training loop that trusts its data).
- ``eager``: the plain-PyTorch definition, :mod:`peptide_losses.reference`
  composed with :func:`~peptide_losses.reference.expected_residue_masses`.
- ``compile``: ``torch.compile(eager, dynamic=False)``, compiled afresh per case.
- ``keops``: the nearest-ion search alone (no loss, no gradient) as a KeOps
  ``LazyTensor`` argmin, with the theoretical ions computed outside the timing.

An implementation that cannot run here raises :class:`NotRun` with the reason.
"""

from __future__ import annotations

from typing import Callable

import torch

from peptide_losses import functional, reference
from peptide_losses.checks import resolve_backend
from benchmarks.support.synthetic import LossBatch

from .grid import Case

IMPLEMENTATIONS = ("triton", "eager", "compile", "keops")
#: fwd+bwd captured once in a CUDA graph and replayed: the device time without
#: the host's launch cost (see :mod:`benchmarks.kernels.measure`). CUDA only.
GRAPH_MODE = "fwd+bwd graph"
#: Which modes each implementation has; the KeOps search has no backward.
MODES = {"triton": ("forward", "backward", "fwd+bwd", GRAPH_MODE),
         "eager": ("forward", "backward", "fwd+bwd", GRAPH_MODE),
         "compile": ("forward", "backward", "fwd+bwd", GRAPH_MODE), "keops": ("forward",)}
#: Stands in for invalid ions in the KeOps search: farther than any peak.
FAR_MZ = 1e30

LossFn = Callable[[LossBatch], torch.Tensor]


class NotRun(Exception):
    """The implementation cannot run here; the message says why."""


def modes(impl: str, device: torch.device) -> tuple[str, ...]:
    """``impl``'s modes on ``device``: no graph replay without CUDA."""
    return tuple(m for m in MODES[impl] if m != GRAPH_MODE or device.type == "cuda")


def applies(impl: str, case: Case) -> bool:
    """KeOps only stands in for the spectrum loss's search."""
    return impl != "keops" or case.loss == "spectrum"


def spectrum_options(case: Case) -> dict:
    # Plain Da (no distance_scale), as every recorded run: the results stay comparable.
    return dict(ion_types=case.ion_types, charges=case.charges, distance_scale=None)


def _on_batch(case: Case, fn) -> LossFn:
    """Calls a loss of tensors ``(logits, masses, mask, *per-spectrum inputs)`` on a batch."""
    if case.loss == "spectrum":
        return lambda b: fn(b.logits, b.masses, b.mask, b.mz, b.intensity, b.peak_mask)
    return lambda b: fn(b.logits, b.masses, b.mask, b.precursor_mz, b.charge)


def reference_loss(case: Case):
    """The eager reference composition for ``case``, as a function of tensors."""
    if case.loss == "spectrum":
        options = spectrum_options(case)

        def spectrum(logits, masses, mask, mz, intensity, peak_mask):
            residue_masses = reference.expected_residue_masses(logits, masses)
            return reference.spectrum_matching_loss(residue_masses, mask, mz, intensity, peak_mask, **options)

        return spectrum

    def precursor(logits, masses, mask, precursor_mz, charge):
        return reference.precursor_mass_loss(reference.expected_residue_masses(logits, masses), mask, precursor_mz, charge)

    return precursor


def triton_loss(case: Case, device: torch.device):
    """The public function with the Triton backend, as a function of tensors."""
    try:
        resolve_backend("triton", device)
    except ValueError as exc:
        raise NotRun(str(exc)) from None
    module = "ops.spectrum" if case.loss == "spectrum" else "ops.precursor"
    try:
        __import__(f"peptide_losses.{module}")
    except ImportError as exc:
        raise NotRun(f"peptide_losses.{module} does not import ({exc})") from None
    if case.loss == "spectrum":
        options = spectrum_options(case)

        def spectrum(logits, masses, mask, mz, intensity, peak_mask):
            return functional.spectrum_matching_loss(
                logits, mz, intensity, masses=masses, mask=mask, peak_mask=peak_mask,
                backend="triton", check_values=False, **options)

        return spectrum

    def precursor(logits, masses, mask, precursor_mz, charge):
        return functional.precursor_mass_loss(
            logits, precursor_mz, charge, masses=masses, mask=mask, backend="triton", check_values=False)

    return precursor


def keops_search(case: Case, sets: list[LossBatch]) -> LossFn:
    """Index (B, N, 1) of each peak's nearest valid ion, by KeOps; ions precomputed per input set."""
    try:
        from pykeops.torch import LazyTensor
    except ImportError:
        raise NotRun("pykeops not installed") from None
    ions = {}
    with torch.no_grad():
        for batch in sets:
            residue_masses = reference.expected_residue_masses(batch.logits, batch.masses)
            theo, valid = reference.fragment_mz(residue_masses, batch.mask, case.ion_types, case.charges)
            ions[id(batch)] = torch.where(valid, theo, FAR_MZ).float().contiguous()

    def search(batch: LossBatch) -> torch.Tensor:
        observed = LazyTensor(batch.mz[:, :, None, None])  # (B, N, 1, 1): i-axis peaks
        theoretical = LazyTensor(ions[id(batch)][:, None, :, None])  # (B, 1, M, 1): j-axis ions
        return (observed - theoretical).abs().argmin(dim=2)

    return search


def build(impl: str, case: Case, sets: list[LossBatch]) -> LossFn:
    """The callable of ``impl`` for ``case`` on the given input sets; :class:`NotRun` if unavailable."""
    if impl == "eager":
        return _on_batch(case, reference_loss(case))
    if impl == "compile":
        # A fresh Dynamo cache per case: with dynamic=False every shape is its
        # own graph, and the grid would otherwise hit the recompile limit.
        torch._dynamo.reset()
        return _on_batch(case, torch.compile(reference_loss(case), dynamic=False))
    if impl == "triton":
        return _on_batch(case, triton_loss(case, sets[0].logits.device))
    if impl == "keops":
        return keops_search(case, sets)
    raise ValueError(f"impl must be one of {IMPLEMENTATIONS}, got {impl!r}")
