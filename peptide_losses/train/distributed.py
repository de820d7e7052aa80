"""Single process or DDP under ``torchrun``, chosen from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Placement:
    """Where this process runs: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> Placement:
    """Join the process group when ``WORLD_SIZE`` > 1 (as set by ``torchrun``).

    With ``device="cuda"`` each process takes GPU ``LOCAL_RANK`` and NCCL;
    on the CPU the group uses gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Placement(0, 1, torch.device(device))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.device(device).type == "cuda":
        place = torch.device("cuda", local)
        torch.cuda.set_device(place)
        backend = "nccl"
    else:
        place = torch.device(device)
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Placement(dist.get_rank(), world, place)


def mean_across(values: dict[str, float], placement: Placement) -> dict[str, float]:
    """The mean of each value over all processes (identity in a single process)."""
    if placement.world == 1:
        return values
    names = sorted(values)
    t = torch.tensor([values[n] for n in names], dtype=torch.float64, device=placement.device)
    dist.all_reduce(t)
    return {n: float(v) / placement.world for n, v in zip(names, t.tolist())}


def barrier(placement: Placement) -> None:
    if placement.world > 1:
        dist.barrier()


def teardown(placement: Placement) -> None:
    if placement.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
