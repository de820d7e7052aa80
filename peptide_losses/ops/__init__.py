"""The fused losses as PyTorch operators: one file per loss, :mod:`.spectrum` and :mod:`.precursor`.

Each file holds the loss's ``torch.autograd.Function`` (the eager
path) and its ``torch.library`` operators ``peptide_losses::<loss>_forward`` /
``_backward`` joined by registered autograd (the compiled path), both over the
same kernel launcher. Under ``torch.compile(..., fullgraph=True)`` the operators
are in its graph without a break, and autocast leaves their inputs alone (no
autocast rule is registered: bf16 logits stay bf16, float64 m/z stay float64;
the kernels compute in float32). Outside tracing the autograd.Function calls the
launchers without the custom-op dispatcher, whose host time per call is more
than both kernels' device time (benchmarks/NOTES.md, "Host path of one eager
call"), and reduces over spectra inside the forward kernel.

The checked options are :mod:`peptide_losses.functional`'s (the reference backend
takes them too), the registration helper is :mod:`peptide_losses.kernels.launch`'s,
and the two files are imported on first use of the kernels: importing the kernels
imports Triton (a second or so), registering a ``triton_op`` does as well, and
Triton reads ``TRITON_INTERPRET`` when a kernel is defined.
"""
