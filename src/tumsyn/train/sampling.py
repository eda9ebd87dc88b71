"""Resumable, shardable batch order: the position in training is (epoch, batch), nothing more.

The order of every epoch is a pure function of (seed, epoch), so a resumed run skips exactly the
batches already seen, and every process of a distributed run agrees on it: each takes its own
slice of every global batch (no DistributedSampler padding, no per-rank shuffles to keep in step).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = ["EpochShuffle", "ResumableBatches"]


class EpochShuffle(Sampler[list[int]]):
    """Global batches of a permutation of ``range(size)`` drawn from (seed, epoch); full only."""

    def __init__(self, size: int, batch_size: int, *, seed: int = 0) -> None:
        if size < batch_size:
            raise ValueError(f"{size} training samples cannot fill a batch of {batch_size}")
        self.size, self.batch_size, self.seed, self.epoch = size, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.size)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield order[start : start + self.batch_size].tolist()

    def __len__(self) -> int:
        return self.size // self.batch_size


class ResumableBatches(Sampler[list[int]]):
    """One epoch of an epoch-aware batch sampler, from batch ``start``, this rank's share only.

    Args:
        batches: a batch sampler with ``set_epoch`` yielding global batches of ``world * b``.
        rank, world: this process and the number of processes.
    """

    def __init__(self, batches, *, rank: int = 0, world: int = 1) -> None:
        self.batches, self.rank, self.world = batches, rank, world
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.batches.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        for number, batch in enumerate(self.batches):
            if number >= self.start:
                yield batch[self.rank :: self.world]

    def __len__(self) -> int:
        return len(self.batches) - self.start
