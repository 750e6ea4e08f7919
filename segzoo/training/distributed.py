"""DDP through torchrun: process-group setup and per-rank index lists."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistContext", "setup_distributed", "teardown_distributed", "shard"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: torch.device) -> DistContext:
    """Initialise the process group when launched by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, nccl on GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed() -> None:
    """Wait for every rank, then destroy the process group (gloo aborts at exit if it is left alive)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(indices: list[int], ctx: DistContext, pad: bool) -> list[int]:
    """This rank's share of ``indices``. ``pad`` (training) repeats samples so ranks get equal counts;
    evaluation does not pad, so that no sample is counted twice."""
    if not ctx.enabled:
        return indices
    if pad and len(indices) % ctx.world_size:
        extra = ctx.world_size - len(indices) % ctx.world_size
        indices = indices + indices[:extra]
    return indices[ctx.rank :: ctx.world_size]
