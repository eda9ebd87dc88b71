"""This process's place among torchrun's processes: rank, world size and device.

Training (``tumsyn.train``) and batch synthesis (``tumsyn.infer``) both run one process per device
under ``torchrun --nproc_per_node=K``; both read their place from the environment torchrun sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) the same way, so it lives here, owned by neither.
Without torchrun a process is a world of one. Nothing here starts a process group: training does
that itself (``tumsyn.train.distributed``), since only it exchanges gradients.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from tumsyn.errors import ConfigError

__all__ = ["World", "environment_world"]


@dataclass(frozen=True)
class World:
    """Rank ``rank`` of ``size`` processes, working on ``device``; rank 0 writes shared files."""

    rank: int
    size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes what all processes share (checkpoints, descriptions)."""
        return self.rank == 0


def _device(requested: str, local_rank: int) -> torch.device:
    """The device named by ``requested``; plain ``cuda`` means this process's own GPU.

    Refused here, before any work, rather than at the first tensor: a CUDA request without a GPU,
    or more processes than GPUs, would otherwise fail deep inside torch with a message that names
    neither the setting nor the process count.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if not requested.startswith("cuda"):
        return torch.device(requested)
    if not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but torch sees no CUDA device")
    index = local_rank if requested == "cuda" else int(requested[5:])
    if index >= torch.cuda.device_count():
        raise ConfigError(
            f"device cuda:{index} asked for (LOCAL_RANK {local_rank}), but torch sees "
            f"{torch.cuda.device_count()} GPU(s): start at most one process per GPU"
        )
    return torch.device("cuda", index)


def environment_world(requested_device: str = "auto") -> World:
    """This process's place from torchrun's environment (a world of one without torchrun).

    Starts no process group: enough for work split into independent items (rank ``r`` of ``k``
    takes items ``i`` with ``i % k == r``). ``cuda`` means the GPU numbered ``LOCAL_RANK``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return World(rank, size, _device(requested_device, local_rank))
