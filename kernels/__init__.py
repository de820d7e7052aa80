"""Triton kernels of peptide_losses, installed as ``peptide_losses.kernels``.

Importing a kernel module needs Triton; set ``TRITON_INTERPRET=1`` before the
import to run them on CPU tensors.
"""
