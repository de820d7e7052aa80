"""The losses are per-rank: DDP over two processes equals one process on the whole batch.

DDP averages gradients over ranks, so with ``reduction="sum"`` the averaged
gradient times the world size must equal the single-process gradient of the
concatenated batch. Runs on CPU with gloo (CI), and with NCCL when two GPUs
are present.
"""

import gc
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import peptide_losses as pl
from benchmarks.support.synthetic import make_batch

WORLD = 2
B, L, N, FEATURES = 6, 9, 24, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(vocab_size: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, L * vocab_size)


def _loss(model, features, batch, rows, vocab, backend):
    logits = model(features[rows]).view(len(rows), L, len(vocab))
    spec = pl.spectrum_matching_loss(
        logits, batch.mz[rows], batch.intensity[rows], masses=vocab, mask=batch.mask[rows],
        peak_mask=batch.peak_mask[rows], distance_scale=0.02, reduction="sum", backend=backend,
    )
    prec = pl.precursor_mass_loss(
        logits, batch.precursor_mz[rows], batch.charge[rows], masses=vocab, mask=batch.mask[rows],
        reduction="sum", backend=backend,
    )
    return spec + 0.01 * prec


def _inputs(device):
    vocab = pl.Vocabulary.default()
    batch = make_batch(B, L, N, seed=3)
    features = torch.randn(B, FEATURES, generator=torch.Generator().manual_seed(4))
    to = lambda t: t.to(device)  # noqa: E731
    batch = type(batch)(**{k: to(v) for k, v in vars(batch).items()})
    return vocab, batch, to(features)


def _worker(rank: int, port: int, backend: str, device_type: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist_backend = "nccl" if device_type == "cuda" else "gloo"
    device = torch.device(device_type, rank) if device_type == "cuda" else torch.device("cpu")
    dist.init_process_group(dist_backend, rank=rank, world_size=WORLD)
    try:
        vocab, batch, features = _inputs(device)
        model = _model(len(vocab)).to(device)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
        rows = torch.arange(rank, B, WORLD, device=device)
        _loss(ddp, features, batch, rows, vocab, backend).backward()
        if rank == 0:
            torch.save([p.grad.cpu() for p in model.parameters()], out)
        # Teardown in order: DDP's reducer holds the process group and its communication
        # threads, so it goes first (a reducer destroyed after the group, at interpreter exit,
        # can abort: "terminate called without an active exception"); then a barrier, so no
        # rank tears gloo down while the other is still in a collective.
        del ddp
        gc.collect()
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", ["reference", "auto"])
def test_ddp_sum_gradients_equal_single_process(backend, tmp_path):
    device_type = "cuda" if torch.cuda.device_count() >= WORLD else "cpu"
    out = str(tmp_path / "grads.pt")
    mp.spawn(_worker, args=(_free_port(), backend, device_type, out), nprocs=WORLD, join=True)
    ddp_grads = torch.load(out)

    device = torch.device(device_type)
    vocab, batch, features = _inputs(device)
    model = _model(len(vocab)).to(device)
    _loss(model, features, batch, torch.arange(B, device=device), vocab, backend).backward()
    for ddp_grad, param in zip(ddp_grads, model.parameters()):
        assert param.grad.abs().sum() > 0
        torch.testing.assert_close(ddp_grad * WORLD, param.grad.cpu(), rtol=1e-5, atol=1e-6)
