"""torchrun support for training: the process group that DistributedDataParallel needs.

Under ``torchrun --nproc_per_node=K tumsyn train CONFIG`` each process finds its place with
:func:`tumsyn.distributed.environment_world` and joins the process group, NCCL on GPUs and gloo on
the CPU, through which DDP averages gradients. A plain ``tumsyn train`` is a world of one and
touches none of this. Batch synthesis needs no process group, hence this lives in ``train/``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from tumsyn.distributed import World, environment_world

__all__ = ["start", "stop"]


def start(requested_device: str = "auto") -> World:
    """This process's place in the run (and the process group, under torchrun)."""
    world = environment_world(requested_device)
    if world.size > 1 and not dist.is_initialized():
        if world.device.type == "cuda":  # before the group: NCCL binds to the current device
            torch.cuda.set_device(world.device)
        dist.init_process_group("nccl" if world.device.type == "cuda" else "gloo")
    return world


def stop(*, finished: bool) -> None:
    """Leave the process group, so that a later run in the same process can start a new one.

    After a finished run the processes first wait for each other (rank 0 may still be saving
    the checkpoint), so that none closes its connections while another still uses the group;
    after an error a process leaves at once, since waiting would last the group's timeout
    (30 minutes) for a peer that failed.
    """
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()
