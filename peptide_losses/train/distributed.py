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


def sum_across(values: torch.Tensor, placement: Placement) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes (a copy; itself in a single process)."""
    total = values.clone()
    if placement.world > 1:
        dist.all_reduce(total)
    return total


def any_across(flag: bool, placement: Placement) -> bool:
    """True when ``flag`` is True in any process (so that all processes stop together)."""
    if placement.world == 1:
        return flag
    t = torch.tensor([float(flag)], device=placement.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def barrier(placement: Placement) -> None:
    if placement.world > 1:
        dist.barrier()


def teardown(placement: Placement) -> None:
    if placement.world > 1 and dist.is_initialized():
        dist.destroy_process_group()
