"""Launching the kernels: with less host work than ``kernel[grid](...)``, and so that
``torch.compile`` can see them (:func:`operator` registers a launcher as a PyTorch operator).

Triton's ``JITFunction.run`` binds every argument, builds its specialisation
key, looks the kernel up and checks the kernel's globals on every launch: tens
of microseconds of host time per launch on a slow host, more than the device
time of a small loss. :class:`LeanKernel` keeps, per specialisation, the
compiled kernel that the JIT returned on its first launch, and later launches
it directly through the compiled kernel's launcher, with the arguments the JIT
would pass (every parameter in signature order, then the launch hooks).

Its own key refines Triton's specialisation: per tensor its dtype and 16-byte
alignment, per integer whether it equals 1, is divisible by 16 and which
integer type holds it; the constexpr and option values; the device. Two
launches with one key therefore get the same compiled kernel from the JIT.

The direct path is used only where it is known to match the JIT:

- Triton's ``JITFunction.run`` launches with the convention replicated here
  (checked once, on its source, at the first launch on a GPU: Triton 3.6 to 3.9 do);
  otherwise every launch goes through the JIT, and a RuntimeWarning says so once,
  with the cost (:data:`JIT_LAUNCH_COST`);
- real CUDA tensors (not under the interpreter, not fake tensors of
  ``torch.compile`` tracing, which :func:`traceable` handles);
- ``PEPTIDE_LOSSES_LEAN_LAUNCH=0`` in the environment turns it off (benchmarks compare).

Nothing here imports Triton before a kernel first launches: ``import peptide_losses``
does not pay Triton's import (about 0.45 s on the 2-core CI machine).

While torch traces a ``torch.library.triton_op`` (fake tensors: the op's shape
inference, and AOTAutograd handing the kernels to Inductor), a launch must go
through ``torch.library.wrap_triton`` (torch 2.6+), which records it as a graph
node. On real tensors the kernel is launched directly: the wrapper's dispatch
costs host time for nothing there.
"""

from __future__ import annotations

import inspect
import os
import warnings
from functools import partial
from typing import Callable

import torch
from torch._subclasses.fake_tensor import is_fake

_LAUNCH_CALL = ("kernel.run(grid_0, grid_1, grid_2, stream, kernel.function, kernel.packed_metadata, "
                "launch_metadata,")


def interpreter_enabled() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors (slowly)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _jit_launch_matches() -> bool:
    """Whether this Triton's JIT launches as :meth:`LeanKernel._launch` does."""
    try:
        from triton.runtime.jit import JITFunction

        source = " ".join(inspect.getsource(JITFunction.run).split())
    except (ImportError, OSError, TypeError):
        return False
    return (_LAUNCH_CALL in source and "*bound_args.values())" in source
            and "launch_metadata = kernel.launch_metadata(grid, stream, *bound_args.values())" in source)


#: What the JIT path costs, measured (benchmarks/results/nvidia-h200/per_call.md, H200, 2026-12-02).
JIT_LAUNCH_COST = "about 0.05-0.08 ms more host time per forward + backward call of a loss"

#: Whether launches may bypass the JIT (see the module docstring): None until the first GPU launch
#: decides (:func:`lean_enabled`); benchmarks set it to compare both paths.
ENABLED: bool | None = None


def lean_enabled() -> bool:
    """:data:`ENABLED`, decided once: off under the interpreter or ``PEPTIDE_LOSSES_LEAN_LAUNCH=0``, and,
    loudly, on a Triton whose JIT launches differently from the path replicated here."""
    global ENABLED
    if ENABLED is None:
        ENABLED = os.environ.get("PEPTIDE_LOSSES_LEAN_LAUNCH", "1") != "0" and not interpreter_enabled()
        if ENABLED and not _jit_launch_matches():
            import triton

            warnings.warn(f"peptide_losses: Triton {triton.__version__} launches kernels differently from the "
                          f"versions whose launch the package replicates (3.6 to 3.9): every kernel launch goes "
                          f"through Triton's JIT instead, correct but slower ({JIT_LAUNCH_COST})",
                          RuntimeWarning, stacklevel=3)
            ENABLED = False
    return ENABLED

wrap_triton = getattr(torch.library, "wrap_triton", None)


def traceable(kernel, x: torch.Tensor):
    """``kernel``, wrapped for tracing when ``x`` (a launch argument) is a traced tensor."""
    if wrap_triton is not None and is_fake(x):
        return wrap_triton(kernel)
    return kernel


def _arg_key(value):
    """One launch argument's part of the key (see the module docstring)."""
    if type(value) is int:
        if value == 1:
            return 1
        kind = 2 if value & 15 == 0 else 3
        if -(2**31) <= value < 2**31:
            return kind
        return kind + (4 if value < 2**63 else 8)
    if isinstance(value, torch.Tensor):
        return value.dtype, value.data_ptr() & 15 == 0
    return type(value), value


class LeanKernel:
    """``LeanKernel(kernel)[grid](*args, **constexprs_and_options)``: as ``kernel[grid](...)``, launched
    directly once this specialisation has been compiled (see the module docstring)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.compiled: dict = {}
        self.names = getattr(kernel, "arg_names", None)

    def __getitem__(self, grid):
        return partial(self.launch, grid)  # no Python frame of its own, unlike a lambda

    def launch(self, grid: tuple, *args, **meta) -> None:
        x = args[0]
        if type(x) is not torch.Tensor or not x.is_cuda or not lean_enabled():
            traceable(self.kernel, x)[grid](*args, **meta)
            return
        device = torch.cuda.current_device()
        key = (device, tuple(map(_arg_key, args)), tuple(meta.items()))
        compiled = self.compiled.get(key)
        if compiled is None:
            compiled = self.kernel[grid](*args, **meta)
            compiled = compiled.result() if hasattr(compiled, "result") else compiled
            self.compiled[key] = compiled
            return
        self._launch(compiled, grid, device, (*args, *(meta[name] for name in self.names[len(args):])))

    @staticmethod
    def _launch(compiled, grid: tuple, device: int, bound: tuple) -> None:
        from triton import knobs  # where the JIT takes the launch hooks from (profilers add theirs)

        stream = torch._C._cuda_getCurrentRawStream(device)
        hooks = knobs.runtime
        compiled.run(grid[0], grid[1] if len(grid) > 1 else 1, grid[2] if len(grid) > 2 else 1, stream,
                     compiled.function, compiled.packed_metadata, compiled.launch_metadata(grid, stream, *bound),
                     hooks.launch_enter_hook, hooks.launch_exit_hook, *bound)


#: The operators are ``peptide_losses::<name>``.
NAMESPACE = "peptide_losses"


def operator_api() -> str:
    """Which torch API registers the operators: ``"triton_op"`` (torch >= 2.6, compiled kernels:
    Inductor sees the Triton kernels themselves, :func:`traceable`, and
    the fake implementation is the launcher run on fake tensors) or ``"custom_op"`` (torch 2.4 / 2.5,
    or kernels under ``TRITON_INTERPRET=1``, which torch cannot trace into: opaque to the compiler,
    with the given fake implementation)."""
    return "triton_op" if hasattr(torch.library, "triton_op") and not interpreter_enabled() else "custom_op"


def operator(name: str, fake: Callable):
    """Decorator: the function as the operator ``peptide_losses::<name>`` of :func:`operator_api`.
    Its annotations are the schema; ``fake`` gives the outputs' shapes and dtypes from the inputs'."""

    def register(implementation: Callable):
        if operator_api() == "triton_op":
            return torch.library.triton_op(f"{NAMESPACE}::{name}", implementation, mutates_args=())
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", implementation, mutates_args=())
        op.register_fake(fake)
        return op

    return register


def gradient_fake(x: torch.Tensor, *_) -> torch.Tensor:
    """Shape of every backward operator's result: x's shape and dtype, contiguous."""
    return x.new_empty(x.shape)
