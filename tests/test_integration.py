"""The losses inside training steps: custom operators, torch.compile, autocast, CUDA graphs, modules.

Runs on the GPU when there is one: backend "auto" is the compiled Triton kernels,
registered with ``torch.library.triton_op`` so Inductor sees them. On the CPU
"auto" is the same kernels under the Triton interpreter, registered as opaque
``torch.library.custom_op`` operators: torch cannot trace an interpreted kernel
(``wrap_triton`` hands it back unwrapped and tracing then fails on fake
tensors), so no test compiles a triton_op on the CPU. The training step is
:mod:`benchmarks.support.step_variants`' (which ``benchmarks/kernels/trainer_integration.py`` times).

Tolerances. Eager, compiled and replayed steps run the same float32 maths, but
Inductor may fuse a * b + c into one FMA and reorder sums, each a rounding of
float32 (about 1e-7 relative), which the losses' differences of nearby m/z
(~1e3 Da against ~1e-1 Da) magnify by up to 1e4: hence compiled against eager
within 1e-3 of each tensor's largest element (seen on the H100: 2e-5). Under autocast the model's own bf16 layers may round differently
once compiled: two bf16 units more. A CUDA-graph replay runs the very kernels of
the eager step: its results must be bitwise equal, as must two runs of one
variant (no atomics).
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch._inductor.utils import run_and_get_code

import peptide_losses as pl
from helpers import DEVICE, ON_CUDA
from peptide_losses.ops import precursor as precursor_op, spectrum as spectrum_op
from benchmarks.support.step_variants import GPU_SIZES, MassLossModel, StepVariant, make_inputs
from benchmarks.support.synthetic import make_batch

needs_cuda = pytest.mark.skipif(not ON_CUDA, reason="needs a GPU")
SIZES = GPU_SIZES if ON_CUDA else dict(batch=4, length=8, peaks=24)
BACKENDS = ("reference", "auto")
#: Compiled against eager: relative, and absolute as a share of each tensor's largest element.
COMPILED_TOLERANCE = 1e-3


@pytest.fixture(autouse=True)
def fresh_dynamo():
    """Each test compiles from scratch (no cache limit reached across tests)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def inputs(seed: int) -> dict[str, torch.Tensor]:
    return make_inputs(**SIZES, device=DEVICE, seed=seed)


def assert_results_close(got, want, tolerance: float) -> None:
    """Loss, gradients and updated weights agree within ``tolerance`` relative to each element
    and to each tensor's largest element (0: bitwise)."""
    for a, b in zip([got.loss, *got.grads, *got.weights], [want.loss, *want.grads, *want.weights]):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance * b.abs().max().item())
    assert any(g.abs().sum() > 0 for g in want.grads)


# ------------------------------------------------------------------ custom operators
def _operator_case(loss: str, entry: str):
    data = make_batch(3, 6, 10, device=DEVICE, seed=5)
    x = (data.logits if entry == "logits" else data.logits[..., 0] * 50 + 100).requires_grad_()
    masses = data.masses if entry == "logits" else None
    if loss == "precursor":
        return precursor_op.forward_operator, (x, masses, data.mask, data.precursor_mz, data.charge, 100.0, [0, 1])
    return spectrum_op.forward_operator, (x, masses, data.mask, data.mz, data.intensity, data.peak_mask, "by",
                                       [1, 2], "both", "ppm", 50.0, 1.5, True)


@pytest.mark.parametrize("entry", ["logits", "residue_masses"])
@pytest.mark.parametrize("loss", ["precursor", "spectrum"])
def test_operators_pass_torch_opcheck(loss, entry):
    """Schema, registered autograd, fake implementation (shapes, dtypes) and AOT tracing with dynamic shapes."""
    op, args = _operator_case(loss, entry)
    results = torch.library.opcheck(op, args)
    assert set(results.values()) == {"SUCCESS"}, results


# ------------------------------------------------------------------ torch.compile
def _functional_call(variant: str, backend: str):
    """A call of both public functions in one of the ways users make it."""
    data = make_batch(3, 7, 12, device=DEVICE, seed=6)
    vocabulary = pl.Vocabulary.default()
    masses = vocabulary if variant == "vocabulary" else data.masses
    mask = data.mask.to(torch.int64) if variant == "integer masks" else data.mask
    reduction = "none" if variant == "reduction none" else "mean"
    residue = data.logits[..., 1] * 20 + 110

    def call(logits):
        prediction = dict(residue_masses=residue) if variant == "residue masses" else dict(masses=masses)
        logits = None if variant == "residue masses" else logits
        spectrum = pl.spectrum_matching_loss(logits, data.mz, data.intensity, mask=mask, peak_mask=data.peak_mask,
                                             direction="both", reduction=reduction, backend=backend, **prediction)
        precursor = pl.precursor_mass_loss(logits, data.precursor_mz, data.charge, mask=mask,
                                           isotope_errors=(0, 1), reduction=reduction, backend=backend, **prediction)
        return spectrum + precursor

    return call, data.logits


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("variant", ["vocabulary", "residue masses", "reduction none", "integer masks"])
def test_public_functions_trace_into_one_graph(variant, backend, dynamic):
    """fullgraph=True raises on any graph break, with static or symbolic shapes (a second batch
    shape makes torch.compile trace with symbolic ones); dynamo's eager backend keeps this cheap."""
    call, logits = _functional_call(variant, backend)
    compiled = torch.compile(call, fullgraph=True, backend="eager", dynamic=dynamic)
    # Traced, the mean over spectra is torch's; eager, the forward kernel's last program sums the rows
    # (kernels/common.py): the same terms in another order, so equal up to float32 rounding.
    torch.testing.assert_close(compiled(logits), call(logits), rtol=4 * torch.finfo(torch.float32).eps, atol=0)


@pytest.mark.parametrize("backend, autocast", [("reference", False), ("auto", False), pytest.param(
    "auto", True, marks=pytest.mark.skipif(not ON_CUDA, reason="compiling under autocast: on the GPU only (CPU compile time)"))])
def test_compiled_training_step_matches_eager(backend, autocast):
    """torch.compile(model + both losses, fullgraph=True): same loss, gradients and update as eager,
    bitwise repeatable, and with backend "auto" the graph holds our operators (on the GPU: our kernels)."""
    eager = StepVariant("eager", backend, SIZES["length"], DEVICE, autocast=autocast)
    compiled = StepVariant("compiled", backend, SIZES["length"], DEVICE, autocast=autocast)
    step = inputs(1)
    got, code = run_and_get_code(compiled.step, step)
    code = "\n".join(code)
    bf16_ulps = 2 * torch.finfo(torch.bfloat16).eps if autocast else 0.0
    assert_results_close(got, eager.step(step), COMPILED_TOLERANCE + bf16_ulps)
    assert compiled.step(step).equals(got)

    if backend == "reference":
        expected = []
    elif ON_CUDA:  # triton_op: Inductor calls the kernels itself, forward and backward
        expected = ["_spectrum_fwd_kernel", "_precursor_fwd_kernel", "_mass_backward_kernel"]
    else:  # custom_op: opaque calls of the operators
        expected = [f"peptide_losses.{loss}_{part}" for loss in ("spectrum_matching_loss", "precursor_mass_loss")
                    for part in ("forward", "backward")]
    assert all(name in code for name in expected), expected
    assert backend != "reference" or "peptide_losses." not in code


# ------------------------------------------------------------------ autocast
@pytest.mark.parametrize("backend", BACKENDS)
def test_autocast_bf16_logits_give_float32_losses_and_bf16_gradients(backend):
    """Under autocast the model emits bf16 logits; each loss computes in float32 (its value equals
    the loss of the same logits upcast, outside autocast) and returns the gradient in bf16
    (that gradient rounded once). bf16 arithmetic inside would put the loss ~1e-2 off."""
    module = MassLossModel(pl.Vocabulary.default(), SIZES["length"], backend=backend).to(DEVICE)
    data = inputs(2)
    losses = {
        "spectrum": lambda x: module.spectrum(x, data["mz"], data["intensity"], data["mask"], data["peak_mask"]),
        "precursor": lambda x: module.precursor(x, data["precursor_mz"], data["charge"], data["mask"]),
    }
    for name, loss_of in losses.items():
        with torch.autocast(DEVICE.type, dtype=torch.bfloat16):
            logits = module.logits(data["features"])
            loss = loss_of(logits)
        (grad,) = torch.autograd.grad(loss, logits)
        upcast = logits.detach().float().requires_grad_()
        want = loss_of(upcast)
        (want_grad,) = torch.autograd.grad(want, upcast)
        assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32 and grad.dtype == torch.bfloat16, name
        torch.testing.assert_close(loss, want, rtol=1e-6, atol=0, msg=name)
        # Rounded once to bf16, to nearest (torch) or toward zero (the Triton interpreter): one ulp.
        torch.testing.assert_close(grad.float(), want_grad, rtol=torch.finfo(torch.bfloat16).eps, atol=0, msg=name)
        assert grad.abs().sum() > 0, name


# ------------------------------------------------------------------ CUDA graphs
@needs_cuda
@pytest.mark.parametrize("autocast", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_cuda_graph_replay_of_a_training_step_equals_eager(backend, autocast):
    """Captured on one batch, replayed on another copied into its inputs: bitwise the eager step."""
    eager = StepVariant("eager", backend, SIZES["length"], DEVICE, autocast=autocast)
    graph = StepVariant("graph", backend, SIZES["length"], DEVICE, autocast=autocast)
    graph.step(inputs(0))  # captures
    replayed = graph.step(inputs(1))
    want = eager.step(inputs(1))
    assert_results_close(replayed, want, 0.0)
    assert graph.step(inputs(1)).equals(replayed)


# ------------------------------------------------------------------ no host sync
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_default_training_step_makes_no_host_sync(backend):
    """Model, both losses at default options, backward, SGD: nothing waits for the GPU (a host sync would
    make the CPU wait for the model's forward before it could queue anything else)."""
    trainer = StepVariant("eager", backend, SIZES["length"], DEVICE)
    step = inputs(0)
    trainer.run(step)  # Triton compiles on the first call
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.run(step)
    finally:
        torch.cuda.set_sync_debug_mode(0)


# ------------------------------------------------------------------ modules
def _keyword_options(fn) -> dict:
    return {name: p.default for name, p in inspect.signature(fn).parameters.items() if p.kind == p.KEYWORD_ONLY}


@pytest.mark.parametrize("module, function", [(pl.SpectrumMatchingLoss, pl.spectrum_matching_loss),
                                              (pl.PrecursorMassLoss, pl.precursor_mass_loss)])
def test_modules_expose_every_option_of_the_functional_with_its_default(module, function):
    options = _keyword_options(function)
    for per_call in ("masses", "mask", "peak_mask", "residue_masses"):
        options.pop(per_call, None)
    module_options = _keyword_options(module.__init__)
    # The model's token names are checked once against the vocabulary: not a loss option.
    assert module_options.pop("tokens") is None
    assert module_options == options


def test_module_masses_stay_float64_when_the_model_is_cast_to_bf16():
    vocabulary = pl.Vocabulary.default()
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), pl.PrecursorMassLoss(vocabulary)).to(torch.bfloat16)
    assert model[0].weight.dtype == torch.bfloat16
    assert torch.equal(model[1].masses, vocabulary.mass_tensor())
