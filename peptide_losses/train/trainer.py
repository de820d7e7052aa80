"""The training loop: staged losses, metrics, validation, checkpoints, plots.

No training step reads the device on the host: batches are simulated on the
training device, the mass losses skip their value checks, loss weights are
Python numbers, and every logged value is summed on the device and read once
per ``logging.every`` steps (the balancer updates from those means). Timing
uses CUDA events on a GPU, so the split between simulating data and computing
the step costs no sync either.
"""

from __future__ import annotations

import contextlib
import json
from collections import defaultdict
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..spectra import SpectrumBatch
from ..vocabulary import Vocabulary
from . import distributed
from .checkpoint import (
    CHECKPOINT_NAME,
    COMPACT_NAME,
    atomic_save,
    check_resumable,
    compact,
    load_checkpoint,
    rng_state,
    set_rng_state,
    vocabulary_record,
)
from .config import TrainConfig
from .data import training_data, validation_sets
from .decoding import beam_decodings, greedy
from .metrics import aa_metrics, first_peptide, ppm_errors, same_residue, token_metrics
from .models import MODELS, run_model
from .objective import Objective
from .plots import plot_curves
from .recorder import Recorder
from .schedule import Balancer, learning_rate, staged_weights
from .stopwatch import Stopwatch

log = logging.getLogger(__name__)

FINAL_METRICS = "final_metrics.json"
PLOT = "curves.png"
#: What every step adds to the device-side sums, in this order (logged as train/<name>).
STEP_VALUES = ("ce", "ce_final", "spectrum_loss", "precursor_loss", "total_loss", "spectrum_factor",
               "precursor_factor", "token_accuracy", "sequence_accuracy", "ppm_error")


def build(config: TrainConfig, vocabulary: Vocabulary, device) -> tuple[torch.nn.Module, Objective]:
    """The model of ``config.model.kind`` (seeded from ``config.seed``) and the objective, on ``device``."""
    torch.manual_seed(config.seed)
    cls = MODELS[config.model.kind]
    model = cls(config.model, len(vocabulary), config.max_length).to(device)
    objective = Objective(vocabulary, config.losses, config.backend, autoregressive=cls.autoregressive)
    return model, objective.to(device)


def autocast(config: TrainConfig, device: torch.device):
    """bf16 autocast when ``config.precision`` asks for it, else nothing."""
    if config.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def step_values(terms, total: torch.Tensor, factors: torch.Tensor, logits: torch.Tensor, batch: SpectrumBatch,
                objective: Objective, isotope_errors) -> torch.Tensor:
    """One step's :data:`STEP_VALUES` as a float64 device tensor (no host read).

    ``total`` and ``factors`` come from :meth:`Objective.weighted_total`.
    Accuracies are of the argmax of the (teacher-forced) logits, isobaric
    tokens counting as equal (:func:`.metrics.same_residue`); the ppm error
    is the median over the batch of the precursor error of that argmax peptide
    (up to its first stop token).
    """
    with torch.no_grad():
        pred = logits.argmax(-1)
        scored = objective.ce_targets(batch) != -100
        correct = same_residue(pred, batch.tokens, objective.token_masses)
        token_accuracy = (correct & batch.mask).sum() / batch.mask.sum().clamp_min(1)
        sequence_accuracy = (correct | ~scored).all(-1).double().mean()
        ppm = ppm_errors(first_peptide(pred), objective.token_masses, batch.precursor_mz, batch.charge,
                         isotope_errors).median()
        parts = (terms.ce, terms.ce_final, terms.spectrum, terms.precursor, total, *factors, token_accuracy,
                 sequence_accuracy, ppm)
        return torch.stack([p.detach().double() for p in parts])


def training_step(model, objective: Objective, optimizer, batch: SpectrumBatch, weights: dict[str, float],
                  config: TrainConfig) -> torch.Tensor:
    """Forward, weighted losses, backward, clipping and the optimiser step on one batch.

    ``model`` is what trains (possibly wrapped in DDP or ``torch.compile``).
    Returns the step's :data:`STEP_VALUES` as a device tensor; nothing here
    reads the device on the host.
    """
    with autocast(config, batch.mz.device):
        logits = run_model(model, batch)
        terms = objective(logits, batch)
    total, factors = objective.weighted_total(terms, weights, logits[-1])
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optimizer.grad_clip)
    optimizer.step()
    return step_values(terms, total, factors, logits[-1], batch, objective, config.losses.precursor.isotope_errors)


def _decoded_metrics(pred: torch.Tensor, true: torch.Tensor, mask: torch.Tensor, ppm: torch.Tensor,
                     masses: torch.Tensor, tolerance_ppm: float) -> dict[str, float]:
    return {
        **token_metrics(pred, true, mask, masses),
        **aa_metrics(pred, true, masses),
        "ppm_error": float(ppm.median()),
        "precursor_match": float((ppm <= tolerance_ppm).double().mean()),
    }


@torch.no_grad()
def evaluate(model, batches: list[SpectrumBatch], objective: Objective, config: TrainConfig, device) -> dict[str, float]:
    """Metrics of one validation split.

    ``ce`` is the teacher-forced cross-entropy per scored token. Then, for each
    decoding (``greedy``; for an autoregressive model also ``precursor_beam`` and
    ``spectrum_rerank``, see :mod:`.decoding`): token / sequence accuracy, Casanovo's aa precision /
    recall and peptide recall, the median precursor error (ppm) of the decoded
    peptides and the share of them within ``decoding.precursor_tolerance_ppm``
    of the observed precursor (``precursor_match``; isotope errors of
    ``losses.precursor.isotope_errors``).
    """
    was_training = model.training
    model.eval()
    isotope_errors = config.losses.precursor.isotope_errors
    tolerance = config.decoding.precursor_tolerance_ppm
    decoded = defaultdict(lambda: ([], []))
    trues, masks, ce_sum, ce_count = [], [], 0.0, 0
    for batch in batches:
        batch = batch.to(device)
        with autocast(config, device):
            logits = run_model(model, batch)[-1]
            preds = {"greedy": greedy(model, batch)}
            if getattr(model, "autoregressive", False):
                preds.update(beam_decodings(model, batch, config.decoding, isotope_errors, config.backend))
            for name, pred in preds.items():
                decoded[name][0].append(pred.cpu())
                decoded[name][1].append(ppm_errors(pred, objective.token_masses, batch.precursor_mz, batch.charge,
                                                   isotope_errors).cpu())
        targets = objective.ce_targets(batch)
        ce_sum += float(torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, reduction="sum"))
        ce_count += int((targets != -100).sum())
        trues.append(batch.tokens.cpu())
        masks.append(batch.mask.cpu())
    model.train(was_training)
    true, mask = torch.cat(trues), torch.cat(masks)
    masses = objective.token_masses.cpu()
    out = {"ce": ce_sum / max(ce_count, 1)}
    for name, (preds, ppms) in decoded.items():
        metrics = _decoded_metrics(torch.cat(preds), true, mask, torch.cat(ppms), masses, tolerance)
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
    return out


def train(config: TrainConfig, out_dir: str | Path, *, resume: str | Path | None = None,
          stop_after: int | None = None, extra_validation: dict[str, str | Path] | None = None) -> dict:
    """Train, log, validate and checkpoint; return the last logged values.

    Args:
        config: the run's settings (from a checkpoint when resuming).
        out_dir: run folder: ``last.pt``, ``metrics.jsonl``/``.csv``,
            ``tensorboard/``, ``curves.png``, ``final_metrics.json``, ``train.log``.
        resume: checkpoint file or run folder to continue from (``last.pt``:
            exactly; ``compact.pt``: with fresh optimiser moments). A checkpoint of
            another vocabulary, model or ``max_length`` is a ValueError raised
            before anything in ``out_dir`` is written.
        stop_after: stop (with a checkpoint) once this step is reached, as if
            interrupted; the schedule still spans ``config.steps``.
        extra_validation: ``{name: path.mgf}`` annotated spectra validated
            beside the simulated easy and hard splits.
    """
    previous = torch.get_num_threads()
    if config.cpu_threads and torch.device(config.device).type == "cpu":
        torch.set_num_threads(config.cpu_threads)
    try:
        return _run(config, Path(out_dir), resume, stop_after, extra_validation)
    finally:
        torch.set_num_threads(previous)


def _run(config: TrainConfig, out_dir: Path, resume, stop_after, extra_validation) -> dict:
    vocabulary = Vocabulary.default()
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        check_resumable(state, config, vocabulary)
    placement = distributed.setup(config.device)
    device = placement.device
    model, objective = build(config, vocabulary, device)
    opt = config.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay,
                                  fused=device.type == "cuda")
    balancer = Balancer(config.balancing)
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        if state["optimizer"] is None:
            log.warning("resuming from a compact checkpoint: AdamW's moments start from zero (not an exact resume)")
        else:
            optimizer.load_state_dict(state["optimizer"])
        balancer.load_state_dict(state["balancer"])
        set_rng_state(state["rng"])
        start = state["step"]
    train_model = model
    if placement.world > 1:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    if config.compile:
        # The model alone: compiled together with the losses, inductor's partitioner
        # failed on torch 2.11 (benchmarks/NOTES.md, "Compiled step").
        train_model = torch.compile(train_model)
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    data = training_data(config, vocabulary, device)
    recorder = None
    if placement.is_main:
        wandb = None
        if config.logging.wandb.enabled:
            wandb = {"project": config.logging.wandb.project, "mode": config.logging.wandb.mode,
                     "config": config.to_dict()}
        recorder = Recorder(out_dir, resume_step=start if resume is not None else None,
                            tensorboard=config.logging.tensorboard, wandb=wandb)
        validation = validation_sets(config, vocabulary, extra_validation)
        log.info("model %s: %d parameters; vocabulary %s (%d tokens); %s on %s, %d process(es); steps %d..%d of %d",
                 config.model.kind, model.n_parameters(), vocabulary.fingerprint, len(vocabulary),
                 "simulated data" if not config.data else config.data, device, placement.world,
                 start, end, config.steps)

    def save(step: int) -> None:
        if placement.is_main:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "balancer": balancer.state_dict(), "rng": rng_state(), "step": step,
                     "config": config.to_dict(), "vocabulary": vocabulary_record(vocabulary)}
            atomic_save(state, out_dir / CHECKPOINT_NAME)
            atomic_save(compact(state), out_dir / COMPACT_NAME)

    sums = torch.zeros(len(STEP_VALUES), dtype=torch.float64, device=device)
    counted = 0
    stopwatch = Stopwatch(device)
    last: dict[str, float] = {}
    bar = tqdm(range(start, end), initial=start, total=config.steps, dynamic_ncols=True,
               disable=not (placement.is_main and config.logging.progress))
    started = time.perf_counter()
    final = timed_out = False
    model.train()
    for step in bar:
        lr = learning_rate(opt, step, config.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        weights = balancer.weights(staged_weights(config.schedule, step, config.steps))
        stopwatch.start()
        batch = data.batch(step, placement.rank, placement.world).to(device)
        stopwatch.lap("data")
        sums += training_step(train_model, objective, optimizer, batch, weights, config)
        stopwatch.lap("compute")
        counted += 1
        done = step + 1

        logging_step = done % config.logging.every == 0 or done == end
        if logging_step and config.time_limit_minutes is not None and done < end:
            if distributed.any_across(time.perf_counter() - started > 60 * config.time_limit_minutes, placement):
                log.info("time limit of %g minutes reached at step %d of %d", config.time_limit_minutes, done, config.steps)
                end, timed_out = done, True
        if logging_step:
            means = dict(zip(STEP_VALUES, (distributed.sum_across(sums, placement) / (counted * placement.world)).tolist()))
            sums.zero_()
            counted = 0
            interval_shares = balancer.update({"ce": means["ce"], "spectrum": means["spectrum_loss"],
                                               "precursor": means["precursor_loss"]}, weights)
            timing = stopwatch.pop()
            bar.set_postfix(ce=f"{means['ce_final']:.3f}", acc=f"{means['token_accuracy']:.3f}")
            if placement.is_main:
                last = {**{f"train/{k}": v for k, v in means.items()}, "train/lr": lr,
                        **{f"curriculum/{k}_weight": w for k, w in weights.items()},
                        **{f"share/{k}": v for k, v in interval_shares.items()},
                        **{f"time/{k}": v for k, v in timing.items()},
                        "time/spectra_per_s": timing["steps_per_s"] * config.batch_size * placement.world}
                if balancer.config.enabled:
                    last.update({f"balancing/{k}_factor": f for k, f in balancer.factors.items()})
                recorder.log(done, last)
        final = done == end and (end == config.steps or timed_out)
        if placement.is_main and (done % config.logging.validate_every == 0 or final):
            for name, batches in validation.items():
                result = {f"val/{name}/{k}": v for k, v in evaluate(model, batches, objective, config, device).items()}
                recorder.log(done, result)
                last.update(result)
        if done % config.checkpoint_every == 0 or done == end:
            save(done)
            distributed.barrier(placement)
        if done == end:
            break
    bar.close()

    if placement.is_main:
        log.info("steps %d..%d took %.1f s", start, end, time.perf_counter() - started)
        if final:
            plot_curves(recorder.records, out_dir / PLOT)
            (out_dir / FINAL_METRICS).write_text(json.dumps(last, indent=2, sort_keys=True))
        recorder.close()
    distributed.teardown(placement)
    return last
