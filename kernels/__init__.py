"""Triton kernels of peptide_losses, installed as ``peptide_losses.kernels``.

The ground floor: nothing here imports from the rest of the package, which
imports the kernels (:mod:`.constants` holds the physical constants both use).

- :mod:`.spectrum`, :mod:`.precursor`: each loss's forward kernel and launchers;
- :mod:`.backward`: the backward kernel of both, and what the forward launchers return;
- :mod:`.common`: pieces both share (row tile, softmax, bad-value flags, reduction, configs);
- :mod:`.launch`: launching with little host time, and so that torch.compile sees the kernels.

Importing a kernel module needs Triton; set ``TRITON_INTERPRET=1`` before the
import to run them on CPU tensors.
"""
