"""Stage-1 (contrastive) data: whole volumes at one spacing, and batches of distinct prompts.

The image encoder sees each volume whole, resampled to an isotropic ``spacing`` and cropped or
padded to ``S^3`` around the brain (the paper: downscaled by 2, 96^3). A symmetric InfoNCE loss
treats every other sample of a batch as a negative, so two samples with the same prompt in one batch
would be pushed apart although their texts are identical; :class:`DistinctPromptBatchSampler`
builds batches with as many distinct prompts as the data allows.

With a :class:`~tumsyn.metadata.augment.PromptAugmentation`, each item also carries its prompt
varied in what the resampled volume cannot show (voxel size, age and sex).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from tumsyn.data.index import ImageRecord
from tumsyn.data.separable import apply_separable, fwhm_sigma, resampling_matrix
from tumsyn.data.volumes import VolumeCache
from tumsyn.errors import ConfigError, ImageError
from tumsyn.io import read_grid, voxel_sizes
from tumsyn.metadata.augment import PromptAugmentation

__all__ = ["DistinctPromptBatchSampler", "WholeVolumes"]


class WholeVolumes(Dataset):
    """Every record's volume at ``spacing`` mm, ``S^3`` voxels centred on the brain.

    Args:
        records: the images.
        cache: where the normalised volumes come from.
        prompt_ids: prompt text -> index; must hold every record's prompt.
        input_size: ``S``, the output edge in voxels.
        spacing: output voxel size in mm (isotropic).
        augmentation: vary each sample's prompt; then items also carry ``"text"``, drawn from
            ``numpy.random.default_rng([seed, epoch, index])`` (see :meth:`set_epoch`).
        seed: base seed of the augmentation.

    Each item is ``{"image": (1, S, S, S) float32 in [0, 1], "prompt": int}`` (the recorded
    prompt's index) and, with ``augmentation``, ``"text"``: the varied prompt. The volume is
    resampled trilinearly on the grid of the same field of view at ``spacing`` (as
    :func:`tumsyn.io.target_grid`), after a Gaussian of FWHM ``spacing / voxel size`` voxels along
    each axis that is downsampled; then cropped or zero padded to ``S^3`` around the centre of the
    brain's (non-zero voxels') bounding box. No randomness.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        cache: VolumeCache,
        prompt_ids: Mapping[str, int],
        *,
        input_size: int = 96,
        spacing: float = 2.0,
        augmentation: PromptAugmentation | None = None,
        seed: int = 0,
    ) -> None:
        self.records = list(records)
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
            raise ConfigError(f"input_size must be a positive integer, got {input_size!r}")
        if not (math.isfinite(spacing) and spacing > 0):
            raise ConfigError(f"spacing must be a positive number of mm, got {spacing!r}")
        missing = sorted({r.prompt for r in self.records if r.prompt not in prompt_ids})
        if missing:
            raise ConfigError(f"prompt_ids lacks {len(missing)} prompt(s), e.g. {missing[0]!r}")
        self.cache = cache
        self.prompt_ids = dict(prompt_ids)
        self.input_size = input_size
        self.spacing = float(spacing)
        self.augmentation, self.seed = augmentation, int(seed)
        # Shared memory, so DataLoader workers see the epoch the main process sets.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose prompt variations items carry."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        record = self.records[index]
        volume = self.cache.get(record.path)
        grid = read_grid(record.path)
        if tuple(volume.shape) != tuple(grid.shape):
            raise ImageError(
                f"{record.path}: cached volume shape {volume.shape} differs from the header's "
                f"{grid.shape}; delete the cache folder"
            )
        foreground = np.asarray(volume) > 0
        matrices = []
        for axis, (n_in, size) in enumerate(zip(grid.shape, voxel_sizes(grid.affine), strict=True)):
            factor = self.spacing / size  # output voxel in input voxels
            n_out = max(int(np.rint(n_in / factor)), 1)
            centre_in, centre_out = (n_in - 1) / 2, (n_out - 1) / 2
            other = tuple(a for a in range(3) if a != axis)
            occupied = np.flatnonzero(foreground.any(axis=other))
            brain = (occupied[0] + occupied[-1]) / 2 if occupied.size else centre_in
            middle = centre_out + (brain - centre_in) / factor
            rows = int(np.rint(middle - (self.input_size - 1) / 2)) + np.arange(self.input_size)
            positions = centre_in + (rows - centre_out) * factor
            sigma = fwhm_sigma(factor) if factor > 1 else 0.0
            matrix = resampling_matrix(n_in, positions, sigma)
            matrix[(rows < 0) | (rows >= n_out)] = 0.0  # padding beyond the resampled grid
            matrices.append(matrix)
        image = np.clip(apply_separable(volume, matrices), 0.0, 1.0)
        item = {"image": torch.from_numpy(image[None]), "prompt": self.prompt_ids[record.prompt]}
        if self.augmentation is not None:
            rng = np.random.default_rng([self.seed, int(self._epoch), index])
            item["text"] = self.augmentation.prompt(record.metadata, rng)
        return item


class DistinctPromptBatchSampler(Sampler[list[int]]):
    """Batches of indices whose prompts are as distinct as the data allows, reshuffled per epoch.

    Each batch is filled from the prompts with the most samples left (ties broken at random), one
    sample per prompt per round, so every batch has ``min(batch_size, prompts left)`` distinct
    prompts and the prompts are used up evenly. With at least ``batch_size`` distinct prompts of
    similar frequency every batch is free of repeats; when one prompt dominates the data set the
    last batches of an epoch may repeat it (the loss should then mask same-prompt pairs). Every
    index is used exactly once per epoch, except the final incomplete batch with ``drop_last``.
    The order of the full batches is shuffled (an incomplete one comes last); everything depends
    only on ``(seed, epoch)``.

    Args:
        prompts: the prompt of each sample of the data set.
        batch_size: samples per batch.
        seed: base seed.
        drop_last: drop the final batch when it is smaller than ``batch_size``.
    """

    def __init__(
        self, prompts: Sequence[str], batch_size: int, *, seed: int = 0, drop_last: bool = True
    ) -> None:
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt, []).append(index)
        self._groups = [np.asarray(g, dtype=np.int64) for g in groups.values()]
        self.num_samples = len(prompts)
        self.batch_size = batch_size
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__iter__`` yields (``>= 0``)."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        groups = [rng.permutation(g) for g in self._groups]
        left = np.asarray([len(g) for g in groups], dtype=np.int64)
        used = np.zeros_like(left)
        batches = []
        for _ in range(len(self)):
            size = min(self.batch_size, int(left.sum()))
            batch: list[int] = []
            while len(batch) < size:
                available = np.flatnonzero(left > 0)
                take = min(size - len(batch), available.size)
                # Most samples left first; the random fraction only breaks ties.
                keys = left[available] + rng.random(available.size)
                chosen = available[np.argpartition(-keys, take - 1)[:take]]
                batch.extend(int(groups[g][used[g]]) for g in chosen)
                used[chosen] += 1
                left[chosen] -= 1
            batches.append(batch)
        full = len(batches) - (len(batches[-1]) < self.batch_size if batches else 0)
        for order in rng.permutation(full):
            yield batches[order]
        yield from batches[full:]  # an incomplete batch stays last
