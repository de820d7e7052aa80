"""Launching the kernels so that ``torch.compile`` can see them.

While torch traces a ``torch.library.triton_op`` (fake tensors: the op's
shape inference, and AOTAutograd handing the kernels to Inductor), a kernel
launch must go through ``torch.library.wrap_triton`` (torch 2.6+), which records
it as a graph node. On real tensors the kernel is launched directly: the
wrapper's dispatch costs host time for nothing there.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake

wrap_triton = getattr(torch.library, "wrap_triton", None)


def traceable(kernel, x: torch.Tensor):
    """``kernel``, wrapped for tracing when ``x`` (a launch argument) is a traced tensor."""
    if wrap_triton is not None and is_fake(x):
        return wrap_triton(kernel)
    return kernel
