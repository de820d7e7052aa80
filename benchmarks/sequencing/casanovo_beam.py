"""Casanovo 5.2.1's beam search on the spectra and GPU of `peptide-losses sequence` (issue 36).

    python -m benchmarks.sequencing.casanovo_beam --device cuda     # beam 5, 20, 40 on 1,024 spectra
    python -m benchmarks.sequencing.casanovo_beam --smoke           # CPU, 8 spectra, a 1-layer model

The model is a ``Spec2Pep`` of Casanovo's default size (``dim_model`` 512, 8 heads, feed-forward 1024,
9 encoder and 9 decoder layers) with random weights (seed 0): its beam search costs the same whatever
its weights learned, except through how many steps it takes. Casanovo's beam runs until every beam has
predicted its stop token, or ``max_peptide_len`` steps; a random model rarely predicts it, so it runs
all of them. ``max_peptide_len`` is therefore set to this project's preset's ``max_length`` (30, the
steps its beam takes without a stop check): both searches take the same number of steps, and each row
reports the decoder calls Casanovo made (steps + 1). Casanovo's default, 100, costs more than 3x that:
its decoder reads the whole prefix at every step (no key/value cache). What is timed
is ``Spec2Pep.beam_search_decode`` (encoder, decoder steps, choosing the top peptide), wall clock with the
device synchronised: Casanovo's reading and writing of files is not in it, which favours Casanovo against
this project's whole command. The spectra are the ones :mod:`benchmarks.sequencing.throughput` decodes
(the shipped real sets repeated, preprocessed as ``peptide-losses sequence`` does), as Casanovo's tensors:
zero-padded m/z and intensities, and (neutral mass, charge, m/z) per precursor.

Casanovo's data stack (polars, pyarrow, lance, rdkit, spectrum_utils, ...) is imported by its package
but not used by the beam search. Where one is missing (the GPU machine cannot install it), its import
is answered by an inert stand-in, and the report lists which were: the model, its decoder and the beam
search are always Casanovo's own code.

Writes ``results/<device>/casanovo_beam.{md,json}``; ``--smoke`` writes nowhere.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
import time
import types
from pathlib import Path

import torch

from peptide_losses.constants import PROTON
from peptide_losses.spectra import Preprocessing
from peptide_losses.vocabulary import Vocabulary

from ..environment import RESULTS_ROOT, describe, save_results, slug
from .throughput import real_spectra, synchronize

#: Modules the beam search runs on: never stood in for.
NEEDED = {"torch", "numpy", "einops", "lightning", "lightning_utilities", "casanovo", "depthcharge", "pyteomics",
          "sortedcontainers", "torchmetrics", "yaml", "fsspec", "packaging", "typing_extensions", "tqdm"}


class _InertType(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _Inert(metaclass=_InertType):
    """Whatever a missing module's attribute is asked for: a class that can be subclassed, called,
    used as a decorator or have its attributes read at import time, and does nothing."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else _Inert()

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Inert()


class _InertModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (_Inert,), {})


class _StandIns(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of the top-level names in ``missing`` (and their submodules) with inert modules."""

    def __init__(self) -> None:
        self.missing: set[str] = set()

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.missing:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _InertModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module) -> None:
        pass


def spec2pep_class() -> tuple[type, list[str]]:
    """Casanovo's ``Spec2Pep`` and the modules stood in for (empty where Casanovo's stack is installed)."""
    stand_ins = _StandIns()
    for _ in range(64):
        try:
            from casanovo.denovo.model import Spec2Pep
            return Spec2Pep, sorted(stand_ins.missing)
        except ModuleNotFoundError as error:
            top = (error.name or "").split(".")[0]
            if not top or top in NEEDED or top in stand_ins.missing:
                raise
            stand_ins.missing.add(top)
            if stand_ins not in sys.meta_path:
                sys.meta_path.append(stand_ins)
            # A half-imported package would be found broken on the next try.
            for name in [n for n in sys.modules if n.split(".")[0] in ("casanovo", "depthcharge")]:
                del sys.modules[name]
    raise ImportError("casanovo needs more than 64 modules this machine lacks")


def casanovo_tensors(spectra: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Casanovo's ``beam_search_decode`` inputs: (B, N) m/z and intensity zero-padded, (B, 3) precursors."""
    peaks = max(len(s.mz) for s in spectra)
    mz = torch.zeros(len(spectra), peaks, dtype=torch.float64)
    intensity = torch.zeros(len(spectra), peaks, dtype=torch.float64)
    for row, s in enumerate(spectra):
        mz[row, :len(s.mz)] = torch.as_tensor(s.mz, dtype=torch.float64)
        intensity[row, :len(s.mz)] = torch.as_tensor(s.intensity, dtype=torch.float64)
    precursor_mz = torch.tensor([s.precursor_mz for s in spectra], dtype=torch.float64)
    charge = torch.tensor([float(s.charge) for s in spectra], dtype=torch.float64)
    precursors = torch.stack([(precursor_mz - PROTON) * charge, charge, precursor_mz], -1)
    return mz.float().to(device), intensity.float().to(device), precursors.float().to(device)


class StepCounter:
    """Counts the calls of a module's forward (the decoder's: one per beam step, plus the first)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._count)

    def _count(self, *_) -> None:
        self.calls += 1


@torch.no_grad()
def measure(model, spectra: list, batch_size: int, device: torch.device) -> dict:
    """Spectra/s of ``model.beam_search_decode`` over ``spectra``, its decoder steps per batch, peak GiB."""
    counter = model._step_counter
    before, seconds = counter.calls, 0.0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    batches = 0
    for start in range(0, len(spectra), batch_size):
        mz, intensity, precursors = casanovo_tensors(spectra[start:start + batch_size], device)
        synchronize(device)
        began = time.perf_counter()
        model.beam_search_decode(mz, intensity, precursors)
        synchronize(device)
        seconds += time.perf_counter() - began
        batches += 1
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"seconds": seconds, "spectra_per_s": len(spectra) / seconds, "peak_gib": peak,
            "decoder_calls_per_batch": (counter.calls - before) / batches}


def build(spec2pep: type, beam_size: int, max_length: int, smoke: bool, device: torch.device):
    torch.manual_seed(0)
    size = {"dim_model": 64, "n_layers": 1, "dim_feedforward": 64} if smoke else {}
    model = spec2pep(n_beams=beam_size, top_match=1, max_peptide_len=max_length, **size).to(device).eval()
    model._step_counter = StepCounter(model.decoder)
    return model


def report(results: dict) -> str:
    env = results["environment"]
    stood_in = ", ".join(results["stand_ins"]) or "none"
    lines = [f"# Casanovo {results['casanovo']} beam search ({env['device']})", "",
             f"{env['date']}; driver {env['driver']}, CUDA {env['cuda']}, torch {env['torch']}. "
             f"{results['spectra']} spectra (the shipped real sets repeated, preprocessed as `peptide-losses "
             f"sequence` does). Command: `python -m benchmarks.sequencing.casanovo_beam --device "
             f"{results['device']}`. Random-weight `Spec2Pep` of the default size ({results['parameters']:,} "
             f"parameters), `max_peptide_len` {results['max_peptide_len']}; `beam_search_decode` timed, file "
             f"I/O not. Modules stood in for: {stood_in}.", "",
             "| K | batch | spectra/s | seconds | decoder calls per batch | peak GiB |",
             "|---:|---:|---:|---:|---:|---:|"]
    for row in results["rows"]:
        if "refused" in row:
            lines.append(f"| {row['beam']} | | Casanovo cannot run: {row['refused']} | | | |")
            continue
        m = row["measured"]
        peak = "" if m["peak_gib"] is None else f"{m['peak_gib']:.2f}"
        lines.append(f"| {row['beam']} | {row['batch']} | {m['spectra_per_s']:,.0f} | {m['seconds']:.2f} | "
                     f"{m['decoder_calls_per_batch']:.1f} | {peak} |")
    return "\n".join(lines + [""])


def main(argv=None) -> Path | str:
    """The written report's path; with ``--smoke`` the report itself (nothing written)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--spectra", type=int, default=1024,
                   help="spectra per row (default 1,024: at K=20 Casanovo decodes ~22/s on an H100)")
    p.add_argument("--beam", type=int, action="append", help="beam sizes (default 5, 20, 40)")
    p.add_argument("--batch", type=int, action="append", help="batch sizes (default 256)")
    p.add_argument("--max-peptide-len", type=int, default=30, help="Casanovo's step limit (its default: 100)")
    p.add_argument("--smoke", action="store_true", help="CPU, 8 spectra, beam 2, a tiny model; writes nowhere")
    p.add_argument("--results", default=str(RESULTS_ROOT))
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.spectra, args.beam, args.batch = "cpu", 8, [2], [4]
    device = torch.device(args.device)
    spec2pep, stand_ins = spec2pep_class()
    spectra = real_spectra(args.spectra, Vocabulary.default(), Preprocessing())
    results = {"environment": describe(device), "device": args.device, "spectra": args.spectra,
               "max_peptide_len": args.max_peptide_len, "casanovo": importlib.metadata.version("casanovo"),
               "stand_ins": stand_ins, "rows": []}
    folder = Path(args.results) / ("cpu" if device.type == "cpu" else slug(results["environment"]["device"]))
    for beam_size in args.beam or [5, 20, 40]:
        model = build(spec2pep, beam_size, args.max_peptide_len, args.smoke, device)
        results["parameters"] = sum(p.numel() for p in model.parameters())
        if beam_size > model.vocab_size:
            # Its first step keeps the top K of one row of V scores (torch.topk): it cannot start.
            rows = [{"beam": beam_size, "refused": f"K > its vocabulary ({model.vocab_size} tokens)"}]
        else:
            measure(model, spectra[:64], 64, device)  # warm-up: the allocator's first blocks, cuBLAS handles
            rows = ({"beam": beam_size, "batch": b, "measured": measure(model, spectra, b, device)}
                    for b in args.batch or [256])
        for row in rows:
            results["rows"].append(row)
            print(report(results).splitlines()[-1], flush=True)
            if not args.smoke:
                save_results(folder, "casanovo_beam", results, report(results))
    return report(results) if args.smoke else folder / "casanovo_beam.md"


if __name__ == "__main__":
    print(main())
