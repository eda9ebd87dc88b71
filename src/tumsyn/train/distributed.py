"""torchrun support: one process per device, DistributedDataParallel, rank 0 writes.

Under ``torchrun --nproc_per_node=K tumsyn train CONFIG`` the environment names this process's
rank; the process group uses NCCL on GPUs and gloo on the CPU. A plain ``tumsyn train`` is a world
of one and touches none of this.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["World", "start", "stop"]


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _device(requested: str, local_rank: int) -> torch.device:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            from tumsyn.errors import ConfigError

            raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device")
        return torch.device("cuda", local_rank if requested == "cuda" else int(requested[5:]))
    return torch.device(requested)


def start(requested_device: str = "auto") -> World:
    """This process's place in the run (and the process group, under torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(requested_device, local_rank)
    if size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return World(rank, size, device)


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
