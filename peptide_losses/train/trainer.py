"""The training loop: staged losses, metrics, validation, checkpoints, plots."""

from __future__ import annotations

import json
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
    atomic_save,
    load_checkpoint,
    rng_state,
    set_rng_state,
    vocabulary_from_record,
    vocabulary_record,
)
from .config import TrainConfig
from .data import training_data, validation_sets
from .metrics import aa_metrics, ppm_errors, token_metrics
from .model import TinyRecursiveModel, run_model
from .objective import Objective
from .plots import plot_curves
from .recorder import Recorder
from .schedule import Balancer, learning_rate, staged_weights

log = logging.getLogger(__name__)

FINAL_METRICS = "final_metrics.json"
PLOT = "curves.png"


def build(config: TrainConfig, vocabulary: Vocabulary, device) -> tuple[TinyRecursiveModel, Objective]:
    """The model (seeded from ``config.seed``) and the objective, on ``device``."""
    torch.manual_seed(config.seed)
    model = TinyRecursiveModel(config.model, len(vocabulary), config.max_length).to(device)
    return model, Objective(vocabulary, config.losses, config.backend).to(device)


def prediction_metrics(logits: torch.Tensor, batch: SpectrumBatch, isotope_errors) -> dict[str, float]:
    """Token / sequence accuracy and median ppm error of the argmax prediction of (B, L, V) logits."""
    pred = logits.argmax(-1)
    masses = batch.vocabulary.mass_tensor(device=pred.device)
    ppm = ppm_errors(pred, masses, batch.precursor_mz, batch.charge, isotope_errors)
    return {**token_metrics(pred, batch.tokens, batch.mask), "ppm_error": float(ppm.median())}


@torch.no_grad()
def evaluate(model, batches: list[SpectrumBatch], objective: Objective, device) -> dict[str, float]:
    """Metrics of one validation split: CE, token / sequence accuracy, Casanovo's
    aa precision / recall and peptide recall, median ppm error of the predictions."""
    was_training = model.training
    model.eval()
    preds, trues, masks, ppms, ces = [], [], [], [], []
    for batch in batches:
        batch = batch.to(device)
        logits = run_model(model, batch)[-1]
        pred = logits.argmax(-1)
        masses = batch.vocabulary.mass_tensor(device=device)
        ppms.append(ppm_errors(pred, masses, batch.precursor_mz, batch.charge,
                               objective.precursor_loss.options["isotope_errors"]))
        ces.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.tokens, reduction="sum"))
        preds.append(pred.cpu())
        trues.append(batch.tokens.cpu())
        masks.append(batch.mask.cpu())
    model.train(was_training)
    pred, true, mask = torch.cat(preds), torch.cat(trues), torch.cat(masks)
    vocabulary = batches[0].vocabulary
    return {
        "ce_final": float(sum(ces)) / true.numel(),
        **token_metrics(pred, true, mask),
        **aa_metrics(pred, true, vocabulary.mass_tensor()),
        "ppm_error": float(torch.cat(ppms).median()),
    }


class _Interval:
    """Means of the per-step values since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def pop(self) -> dict[str, float]:
        means = {k: v / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return means


def _step_values(values, weights, step_shares, lr, balancer: Balancer) -> dict[str, float]:
    """One step's loggable values under the issue's metric names."""
    out = {
        "train/ce": values["ce"], "train/ce_final": values["ce_final"],
        "train/spectrum_loss": values["spectrum"], "train/precursor_loss": values["precursor"],
        "train/total_loss": sum(weights[k] * values[k] for k in weights),
        "train/token_accuracy": values["token_accuracy"], "train/sequence_accuracy": values["sequence_accuracy"],
        "train/ppm_error": values["ppm_error"], "train/lr": lr,
        **{f"curriculum/{k}_weight": w for k, w in weights.items()},
        **{f"share/{k}": s for k, s in step_shares.items()},
    }
    if balancer.config.enabled:
        out.update({f"curriculum/{k}_factor": f for k, f in balancer.factors.items()})
    return out


def train(config: TrainConfig, out_dir: str | Path, *, resume: str | Path | None = None,
          stop_after: int | None = None, extra_validation: dict[str, str | Path] | None = None) -> dict:
    """Train, log, validate and checkpoint; return the last logged values.

    Args:
        config: the run's settings (from a checkpoint when resuming).
        out_dir: run folder: ``last.pt``, ``metrics.jsonl``/``.csv``,
            ``tensorboard/``, ``curves.png``, ``final_metrics.json``, ``train.log``.
        resume: checkpoint file or run folder to continue from, exactly.
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
    placement = distributed.setup(config.device)
    vocabulary = Vocabulary.default()
    model, objective = build(config, vocabulary, placement.device)
    opt = config.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    balancer = Balancer(config.balancing)
    start = 0
    if resume is not None:
        state = load_checkpoint(resume, map_location=placement.device)
        if vocabulary_from_record(state["vocabulary"]) != vocabulary:
            raise ValueError("the checkpoint was trained with another vocabulary; it cannot be resumed with this one")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        balancer.load_state_dict(state["balancer"])
        set_rng_state(state["rng"])
        start = state["step"]
    if placement.world > 1:
        device_ids = [placement.device.index] if placement.device.type == "cuda" else None
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    else:
        ddp_model = model
    end = config.steps if stop_after is None else min(stop_after, config.steps)
    data = training_data(config, vocabulary)
    recorder = None
    if placement.is_main:
        wandb = None
        if config.logging.wandb.enabled:
            wandb = {"project": config.logging.wandb.project, "mode": config.logging.wandb.mode,
                     "config": config.to_dict()}
        recorder = Recorder(out_dir, resume_step=start if resume is not None else None,
                            tensorboard=config.logging.tensorboard, wandb=wandb)
        validation = validation_sets(config, vocabulary, extra_validation)
        log.info("model: %d parameters; vocabulary %s (%d tokens); %s on %s, %d process(es); steps %d..%d of %d",
                 model.n_parameters(), vocabulary.fingerprint, len(vocabulary),
                 "simulated data" if not config.data else config.data, placement.device, placement.world,
                 start, end, config.steps)

    def save(step: int) -> None:
        if placement.is_main:
            atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "balancer": balancer.state_dict(), "rng": rng_state(), "step": step,
                         "config": config.to_dict(), "vocabulary": vocabulary_record(vocabulary)},
                        out_dir / CHECKPOINT_NAME)

    isotope_errors = config.losses.precursor.isotope_errors
    interval = _Interval()
    last: dict[str, float] = {}
    bar = tqdm(range(start, end), initial=start, total=config.steps, dynamic_ncols=True,
               disable=not (placement.is_main and config.logging.progress))
    started = time.perf_counter()
    model.train()
    for step in bar:
        lr = learning_rate(opt, step, config.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = data.batch(step, placement.rank, placement.world).to(placement.device)
        logits = run_model(ddp_model, batch)
        weights = balancer.weights(staged_weights(config.schedule, step, config.steps))
        terms = objective(logits, batch)
        optimizer.zero_grad(set_to_none=True)
        terms.total(weights).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.grad_clip)
        optimizer.step()

        with torch.no_grad():
            metrics = prediction_metrics(logits[-1], batch, isotope_errors)
        values = distributed.mean_across({**terms.detached(), **metrics}, placement)
        step_shares = balancer.update(values, weights)
        interval.add(_step_values(values, weights, step_shares, lr, balancer))
        done = step + 1
        bar.set_postfix(ce=f"{values['ce_final']:.3f}", spec=f"{values['spectrum']:.3g}",
                        prec=f"{values['precursor']:.3g}", acc=f"{values['token_accuracy']:.3f}")

        if placement.is_main:
            if done % config.logging.every == 0 or done == end:
                last = interval.pop()
                recorder.log(done, last)
            if done % config.logging.validate_every == 0 or done == config.steps:
                for name, batches in validation.items():
                    result = evaluate(model, batches, objective, placement.device)
                    recorder.log(done, {f"val/{name}/{k}": v for k, v in result.items()})
                    last.update({f"val/{name}/{k}": v for k, v in result.items()})
        if done % config.checkpoint_every == 0 or done == end:
            save(done)
        distributed.barrier(placement)
    bar.close()

    if placement.is_main:
        log.info("steps %d..%d took %.1f s", start, end, time.perf_counter() - started)
        if end == config.steps:
            plot_curves(recorder.records, out_dir / PLOT)
            (out_dir / FINAL_METRICS).write_text(json.dumps(last, indent=2, sort_keys=True))
        recorder.close()
    distributed.teardown(placement)
    return last
