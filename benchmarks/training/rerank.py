"""Reranking a trained model's beam by the spectrum: recall, options, weight, beam size and speed.

On one checkpoint of the trainer (``compact.pt``), for fresh simulated easy and
hard spectra of validation peptides (a calibration draw and a report draw, of
other seeds than the trainer's validation) and the real annotated spectra:

1. beam search with K candidates (several K, and optionally spectrum-guided
   beams, :func:`peptide_losses.decoding.spectrum_guide`), timed;
2. every candidate scored by :func:`peptide_losses.spectrum_scores` under each
   option set, and the choice of :func:`peptide_losses.decoding.rerank` for a
   grid of weights; the weight of each (option set, K) is the one with the best
   calibration recall (easy + hard), then reported on the report draw and the
   real spectra; the ceiling is the share of spectra whose truth is anywhere in
   the beam;
3. on the real spectra, how often the true peptide scores below all of 20
   same-mass permutations (:func:`peptide_losses.scoring.shuffled_decoys`);
4. the scorer against the plain-PyTorch loss of one-hot residue masses, eager
   and compiled (B=1024 spectra x K, N=150, L=20, no grad): median time and
   peak memory.

``python -m benchmarks.training.rerank --checkpoint runs/gpu/compact.pt --out DIR`` (GPU, a few minutes)
writes ``rerank.json`` and ``rerank.md`` to DIR.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from peptide_losses import spectrum_matching_loss
from peptide_losses.decoding import candidate_ppm, rerank
from peptide_losses.datasets import CASANOVO_SAMPLE
from peptide_losses.scoring import shuffled_decoys, spectrum_scores
from peptide_losses.spectra import Preprocessing, collate
from peptide_losses.train.checkpoint import load_checkpoint
from peptide_losses.train.config import config_from_dict, with_defaults
from peptide_losses.train.data import read_annotated
from peptide_losses.train.decoding import beam_candidates, greedy
from peptide_losses.train.metrics import peptide_matches
from peptide_losses.train.simulate import SpectrumSimulator, generator, split_peptides
from peptide_losses.train.trainer import autocast, build
from peptide_losses.vocabulary import Vocabulary

#: Option sets of the scorer compared (changes from the default).
OPTION_SETS = {
    "both": {},
    "observed": {"direction": "observed"},
    "theoretical": {"direction": "theoretical"},
    "both, charge 1": {"charges": (1,)},
    "both, a/b/y": {"ion_types": ("a", "b", "y")},
    "both, tau 0.02 Da": {"distance_scale": 0.02},
    "both, ppm": {"distance": "ppm"},
    "both, intensity^0.5": {"intensity_power": 0.5},
}
WEIGHTS = (0.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)
#: Streams of the simulated draws: other than the trainer's validation streams (1, 2).
DRAWS = {"calibration": 101, "report": 202}
SPLITS = ("easy", "hard")
CHUNK = 256


def load_model(path, device):
    state = load_checkpoint(path, map_location=device)
    config = config_from_dict(with_defaults(state["config"]))
    if torch.device(device).type != "cuda":
        config = dataclasses.replace(config, precision="fp32")  # CPU bf16 autocast only slows a smoke run
    vocabulary = Vocabulary.default()
    model, _ = build(config, vocabulary, device)
    model.load_state_dict({k: v.float() for k, v in state["model"].items()})
    model.eval()
    return model, config, vocabulary, state["step"]


def simulated(config, vocabulary, split: str, size: int, stream: int):
    sim = config.simulation
    _, peptides = split_peptides(sim.validation_peptide_fraction, sim.proteins, sim.peptides)
    simulator = SpectrumSimulator(peptides, getattr(sim, split), vocabulary, Preprocessing(), config.max_length)
    rng = generator("cpu", config.seed, stream)
    return [simulator.sample(min(CHUNK, size - i), rng) for i in range(0, size, CHUNK)]


def real(vocabulary, config, path):
    items = read_annotated(path, vocabulary, config.max_length)
    return [collate(items[i:i + CHUNK], vocabulary, max_length=config.max_length) for i in range(0, len(items), CHUNK)]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decode(model, config, batches, k: int, device, guide_weight: float | None = None):
    """Candidates and ppm per batch, and the seconds the beam search took (scoring not included)."""
    out, seconds = [], 0.0
    masses = batches[0].vocabulary.mass_tensor(device=device)
    for batch in batches:
        batch = batch.to(device)
        synchronize(device)
        start = time.perf_counter()
        with autocast(config, device):
            candidates = beam_candidates(model, batch, k, guide_weight)
        synchronize(device)
        seconds += time.perf_counter() - start
        ppm = candidate_ppm(candidates.tokens, masses, batch.precursor_mz, batch.charge,
                            config.losses.precursor.isotope_errors)
        out.append((batch, candidates, ppm))
    return out, seconds


def evaluate_beam(decoded, config, masses_cpu):
    """Per option set and weight: the chosen candidates' matches; plus the ceiling and score time."""
    tolerance = config.decoding.precursor_tolerance_ppm
    matches, chosen, ceiling, score_seconds = [], {}, [], 0.0
    for batch, candidates, ppm in decoded:
        k = candidates.tokens.shape[1]
        true = batch.tokens.cpu()
        match = torch.stack([peptide_matches(candidates.tokens[:, j].cpu(), true, masses_cpu) for j in range(k)], 1)
        alive = torch.isfinite(candidates.log_prob).cpu()
        model_scores = candidates.mean_log_prob()
        ceiling.append((match & alive).any(1))
        matches.append(match)
        for name, options in OPTION_SETS.items():
            synchronize(batch.mz.device)
            start = time.perf_counter()
            scores = spectrum_scores(candidates.tokens, batch.mz, batch.intensity, masses=batch.vocabulary,
                                     peak_mask=batch.peak_mask, **options)
            synchronize(batch.mz.device)
            if name == "both":
                score_seconds += time.perf_counter() - start
            for weight in WEIGHTS:
                index = rerank(candidates.tokens, model_scores, precursor_ppm=ppm, tolerance_ppm=tolerance,
                               spectrum_scores=scores, weight=weight).index.cpu()
                chosen.setdefault((name, weight), []).append(match[torch.arange(len(index)), index])
    recall = {key: float(torch.cat(v).float().mean()) for key, v in chosen.items()}
    return recall, float(torch.cat(ceiling).float().mean()), score_seconds


def truth_first(vocabulary, config, path, device, decoys: int = 20) -> dict[str, float]:
    """Share of real spectra whose true peptide scores strictly below all ``decoys`` permutations."""
    batch = real(vocabulary, config, path)[0].to(device)
    masses = vocabulary.mass_tensor()
    shuffled = shuffled_decoys(batch.tokens, masses, decoys, torch.Generator().manual_seed(0)).to(device)
    tokens = torch.cat([batch.tokens[:, None], shuffled], 1)
    out = {}
    for name, options in OPTION_SETS.items():
        scores = spectrum_scores(tokens, batch.mz, batch.intensity, masses=vocabulary, peak_mask=batch.peak_mask,
                                 **options)
        out[name] = float((scores[:, :1] < scores[:, 1:]).all(1).float().mean())
    return out


def scorer_speed(device, ks=(5, 20, 50), batch=1024, peaks=150, length=20, repeats=20) -> list[dict]:
    """Median ms and peak extra MiB: ours, the reference loss of one-hot masses eager and compiled."""
    vocabulary = Vocabulary.default()
    masses = vocabulary.mass_tensor(device=device, dtype=torch.float32)
    g = torch.Generator(device="cpu").manual_seed(0)
    mz = (torch.rand(batch, peaks, generator=g) * 1800 + 100).sort(-1).values.to(device)
    intensity = torch.rand(batch, peaks, generator=g).to(device)
    peak_mask = torch.ones(batch, peaks, dtype=torch.bool, device=device)

    def plain(tokens, mz, intensity, peak_mask):
        flat = tokens.reshape(-1, tokens.shape[-1])
        k = tokens.shape[1]
        one_hot = torch.nn.functional.one_hot(flat, len(masses)).to(masses.dtype)
        return spectrum_matching_loss(None, mz.repeat_interleave(k, 0), intensity.repeat_interleave(k, 0),
                                      residue_masses=one_hot @ masses, mask=flat != 0,
                                      peak_mask=peak_mask.repeat_interleave(k, 0), direction="both",
                                      reduction="none", backend="reference").view(tokens.shape[:2])

    compiled = torch.compile(plain)
    rows = []
    for k in ks:
        tokens = torch.randint(1, len(masses), (batch, k, length), generator=g).to(device)
        tokens[:, :, 15:] = 0
        impls = {"ours": lambda: spectrum_scores(tokens, mz, intensity, masses=masses, peak_mask=peak_mask),
                 "reference": lambda: plain(tokens, mz, intensity, peak_mask),
                 "compiled": lambda: compiled(tokens, mz, intensity, peak_mask)}
        row = {"K": k}
        with torch.no_grad():
            expected = impls["reference"]()
            for name, fn in impls.items():
                got = fn()
                row[f"{name}_max_abs_diff"] = float((got - expected).abs().max())
                row[f"{name}_ms"] = median_ms(fn, repeats)
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                fn()
                synchronize(device)
                row[f"{name}_mib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        if k == 20:
            row["launch_configs_ms"] = launch_config_sweep(tokens, mz, intensity, peak_mask, masses, repeats)
        rows.append(row)
    return rows


def launch_config_sweep(tokens, mz, intensity, peak_mask, masses, repeats) -> dict[str, float]:
    """Median ms of the scorer's kernel launch per (peaks per tile, warps)."""
    from peptide_losses.kernels.spectrum import launch_config, spectrum_forward
    from peptide_losses.scoring import candidate_masses

    batch, k, length = tokens.shape
    residue_masses, mask = candidate_masses(tokens.reshape(batch * k, length), masses)
    out = {}
    for block_n, warps in ((64, 1), (64, 2), (128, 1), (128, 2), (128, 4), (256, 2), (256, 4), (256, 8)):
        config = launch_config(length, None, block_n=block_n, num_warps=warps)

        def run():
            return spectrum_forward(residue_masses, None, mask, mz, intensity, peak_mask, ion_types=("b", "y"),
                                    charges=(1, 2), direction="both", distance="da", distance_scale=0.005,
                                    intensity_power=1.0, need_grad=False, config=config, rows_per_spectrum=k)
        run()
        out[f"{block_n} peaks x {warps} warps"] = median_ms(run, repeats)
    return out


def median_ms(fn, repeats: int, calls: int = 5) -> float:
    """Median over ``repeats`` of the CUDA-event time of ``calls`` back-to-back calls, per call: the
    device's time when it is the bottleneck, the host's otherwise."""
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return sorted(times)[len(times) // 2]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--size", type=int, default=1024, help="spectra per simulated split and draw")
    p.add_argument("--beam-sizes", default="5,10,20,40")
    p.add_argument("--guide-weights", default="1,2,4", help="spectrum-guided beams (K=20) to try")
    p.add_argument("--real", default=None, help="annotated MGF (default the shared real spectra)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, config, vocabulary, step = load_model(args.checkpoint, device)
    masses_cpu = vocabulary.mass_tensor()
    real_path = args.real or CASANOVO_SAMPLE
    sets = {(split, draw): simulated(config, vocabulary, split, args.size, stream + i)
            for draw, stream in DRAWS.items() for i, split in enumerate(SPLITS)}
    sets[("real", "report")] = real(vocabulary, config, real_path)
    result = {"checkpoint_step": step, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "size": args.size, "beams": {}, "greedy": {}}
    import triton

    result["triton"] = triton.__version__
    for key, batches in sets.items():
        preds = []
        with torch.no_grad(), autocast(config, device):
            for batch in batches:
                b = batch.to(device)
                preds.append(peptide_matches(greedy(model, b).cpu(), batch.tokens, masses_cpu))
        result["greedy"]["/".join(key)] = float(torch.cat(preds).float().mean())
    variants = [(int(k), None) for k in args.beam_sizes.split(",")]
    variants += [(20, float(w)) for w in args.guide_weights.split(",") if w]

    def save():
        (out / "rerank.json").write_text(json.dumps(result, indent=1))
        (out / "rerank.md").write_text(report(result))

    result["truth_first"] = truth_first(vocabulary, config, real_path, device)
    print("truth first", result["truth_first"], flush=True)
    if device.type == "cuda":
        result["scorer_speed"] = scorer_speed(device)
        print("speed", result["scorer_speed"], flush=True)
    for k, guide_weight in variants:
        name = f"K={k}" + ("" if guide_weight is None else f", guided {guide_weight}")
        entry = {}
        for key, batches in sets.items():
            decoded, beam_seconds = decode(model, config, batches, k, device, guide_weight)
            recall, ceiling, score_seconds = evaluate_beam(decoded, config, masses_cpu)
            entry["/".join(key)] = {"recall": {f"{o}|{w}": r for (o, w), r in recall.items()}, "ceiling": ceiling,
                                    "beam_s": beam_seconds, "score_s": score_seconds,
                                    "spectra": sum(len(b) for b in batches)}
        result["beams"][name] = entry
        print(name, {k2: (v["recall"]["both|0.0"], v["recall"]["both|100.0"], v["ceiling"]) for k2, v in entry.items()},
              flush=True)
        save()
    save()
    print(report(result))


def chosen_weights(entry) -> dict[str, float]:
    """Per option set, the weight with the best calibration recall (easy + hard; ties: the smaller)."""
    best = {}
    for option in OPTION_SETS:
        def calibration(w):
            return sum(entry[f"{s}/calibration"]["recall"][f"{option}|{w}"] for s in SPLITS)
        best[option] = max(WEIGHTS, key=lambda w: (calibration(w), -w))
    return best


def report(result) -> str:
    lines = [f"# Spectrum reranking of beam candidates\n",
             f"{result['device']}, torch {result['torch']}, triton {result['triton']}, {result['date']}; "
             f"checkpoint step {result['checkpoint_step']}; {result['size']} simulated spectra per split and draw, "
             f"the real spectra. Weight per (beam, option set) chosen on the calibration draw (easy + hard recall); "
             f"recall on the report draw and the real spectra. Greedy peptide recall: "
             + ", ".join(f"{k} {v:.3f}" for k, v in result["greedy"].items() if "calibration" not in k) + ".\n",
             "| beam | option set | weight | easy | hard | real | easy / hard / real at weight 0 (precursor beam) "
             "| ceiling easy / hard / real | beam s (hard) | score s (hard) |",
             "|---|---|---:|---:|---:|---:|---|---|---:|---:|"]
    for name, entry in result["beams"].items():
        weights = chosen_weights(entry)
        for option, w in weights.items():
            cells = [entry[f"{s}/report"]["recall"][f"{option}|{w}"] for s in ("easy", "hard", "real")]
            base = [entry[f"{s}/report"]["recall"][f"{option}|0.0"] for s in ("easy", "hard", "real")]
            ceil = [entry[f"{s}/report"]["ceiling"] for s in ("easy", "hard", "real")]
            hard = entry["hard/report"]
            lines.append(f"| {name} | {option} | {w:g} | " + " | ".join(f"{c:.3f}" for c in cells)
                         + " | " + " / ".join(f"{c:.3f}" for c in base) + " | " + " / ".join(f"{c:.3f}" for c in ceil)
                         + f" | {hard['beam_s']:.2f} | {hard['score_s']:.3f} |")
    lines += ["", "True peptide below all 20 same-mass permutations (real spectra):", "",
              "| option set | share |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in result["truth_first"].items()]
    if "scorer_speed" in result:
        lines += ["", "Scorer, B=1024 spectra x K candidates, N=150, L=20, no grad (median ms; peak extra MiB):", "",
                  "| K | ours ms | reference ms | compiled ms | ours MiB | reference MiB | compiled MiB | "
                  "ours / compiled time | ours max abs diff |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["scorer_speed"]:
            lines.append(f"| {r['K']} | {r['ours_ms']:.3f} | {r['reference_ms']:.3f} | {r['compiled_ms']:.3f} | "
                         f"{r['ours_mib']:.1f} | {r['reference_mib']:.0f} | {r['compiled_mib']:.0f} | "
                         f"{r['ours_ms'] / r['compiled_ms']:.2f} | {r['ours_max_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
