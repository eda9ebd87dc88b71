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

__all__ = ["World", "environment_world", "start", "stop"]


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
        index = local_rank if requested == "cuda" else int(requested[5:])
        if index >= torch.cuda.device_count():
            from tumsyn.errors import ConfigError

            raise ConfigError(
                f"device cuda:{index} asked for (LOCAL_RANK {local_rank}), but torch sees "
                f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU"
            )
        return torch.device("cuda", index)
    return torch.device(requested)


def environment_world(requested_device: str = "auto") -> World:
    """This process's place from torchrun's environment (a world of one without torchrun).

    Starts no process group: enough for work split into independent items (rank ``r`` of ``k``
    takes items ``i`` with ``i % k == r``). ``cuda`` means the GPU numbered ``LOCAL_RANK``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return World(rank, size, _device(requested_device, local_rank))


def start(requested_device: str = "auto") -> World:
    """This process's place in the run (and the process group, under torchrun)."""
    world = environment_world(requested_device)
    if world.size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if world.device.type == "cuda" else "gloo")
        if world.device.type == "cuda":
            torch.cuda.set_device(world.device)
    return world


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
