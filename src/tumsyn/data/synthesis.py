"""Stage-2 training samples: a low-resolution source patch, a target prompt, and LIIF queries.

Each sample follows the official recipe (a high-resolution cube of ``P * s`` voxels reduced to
``P^3``, 8000 query points in the high-resolution target) with three corrections: the reduction
is anti-aliased (a Gaussian of FWHM ``s`` voxels, as an acquisition at the coarser voxel size would
blur) instead of a plain zoom; the scale may differ per axis (thick-slice inputs); and the queries
carry LIIF's cell size. Coordinates follow :func:`tumsyn.models.liif.cell_centres`: both the
input patch and the high-resolution crop span [-1, 1] along each axis, so a query's coordinate
says where it lies in the input patch, whatever the scale.

Every random choice of sample ``index`` in epoch ``epoch`` comes from
``numpy.random.default_rng([seed, epoch, index])`` and is drawn in :meth:`parameters` before any
pixel is touched; rendering is deterministic. A sample therefore depends on ``(seed, epoch,
index)`` alone, in any worker and after any resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tumsyn.data.index import ImageRecord
from tumsyn.data.separable import apply_separable, fwhm_sigma, gaussian_radius, resampling_matrix
from tumsyn.data.volumes import VolumeCache
from tumsyn.errors import ConfigError, ImageError
from tumsyn.metadata import prompt_without_subject

__all__ = ["PatchParameters", "SynthesisPatches", "crop_padded"]

_CENTRE_TRIES = 64  # random crop centres tried before searching the brain voxels explicitly


@dataclass(frozen=True)
class PatchParameters:
    """The random choices behind one sample (TorchIO's ``make_params``), all in voxels.

    Args:
        pair: index into the data set's pairs.
        scale: per-axis ratio of the high-resolution crop to the patch, ``crop_size / patch_size``.
        crop_start: first voxel of the crop in the volume (negative or past the end: zero padded).
        crop_size: voxels of the high-resolution crop per axis.
        voxels: ``(Q, 3)`` int64 query voxels, indices into the crop.
        without_subject: the target prompt's age and sex are left out (``subject_dropout``).
    """

    pair: int
    scale: tuple[float, float, float]
    crop_start: tuple[int, int, int]
    crop_size: tuple[int, int, int]
    voxels: np.ndarray
    without_subject: bool = False


def crop_padded(volume: np.ndarray, start: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The box ``[start, start + size)`` of a 3D volume as float32, zero where it leaves it."""
    out = np.zeros(tuple(int(n) for n in size), dtype=np.float32)
    source, destination = [], []
    for begin, length, extent in zip(start, size, volume.shape, strict=True):
        low, high = max(int(begin), 0), min(int(begin) + int(length), extent)
        if high <= low:
            return out
        source.append(slice(low, high))
        destination.append(slice(low - begin, high - begin))
    out[tuple(destination)] = volume[tuple(source)]
    return out


class SynthesisPatches(Dataset):
    """Random (source patch, target prompt, target queries) samples from co-registered pairs.

    Args:
        pairs: ``(source, target)`` records, e.g. from :func:`paired_records`.
        cache: where the normalised volumes come from.
        prompt_ids: prompt text -> index into the (precomputed) prompt embeddings; must hold
            every target's prompt.
        patch_size: ``P``, the input patch edge in voxels.
        queries: ``Q``, target voxels per sample.
        scale_range: ``(low, high)``, ``1 <= low <= high``: the scale ``s`` of each axis is drawn
            uniformly from it; the crop has ``max(P, round(P * s))`` voxels.
        anisotropic: probability that the three axes get independent scales (otherwise one).
        subject_dropout: probability that a sample's target prompt leaves out age and sex
            (:func:`prompt_without_subject`; ``prompt_ids`` must then hold those prompts too),
            so that the model learns to answer prompts of users who know neither.
        seed: base seed of every random choice.
        length: samples per epoch (default: one per pair); sample ``i`` uses pair
            ``i % len(pairs)``.

    Each item is a dict of float32 tensors (and an int):

    - ``source`` ``(1, P, P, P)``: the anti-aliased, downsampled source crop, in [0, 1];
    - ``coord`` ``(Q, 3)``: query voxel centres in [-1, 1], ``(z, y, x)`` = array axis order;
    - ``cell`` ``(Q, 3)``: ``2 / crop_size`` per axis;
    - ``target`` ``(Q, 1)``: the target volume at those voxels, in [0, 1];
    - ``prompt``: ``prompt_ids[target.prompt]``;
    - ``scale`` ``(3,)``: ``crop_size / P``.

    The epoch set by :meth:`set_epoch` lives in shared memory, so DataLoader workers (persistent
    ones included) see it; call it before iterating the loader for that epoch.

    Example:
        >>> patches = SynthesisPatches(paired_records(records), VolumeCache(tmp), ids,
        ...                            patch_size=32)  # doctest: +SKIP
        >>> patches[0]["source"].shape  # doctest: +SKIP
        torch.Size([1, 32, 32, 32])
    """

    def __init__(
        self,
        pairs: Sequence[tuple[ImageRecord, ImageRecord]],
        cache: VolumeCache,
        prompt_ids: Mapping[str, int],
        *,
        patch_size: int = 32,
        queries: int = 8000,
        scale_range: tuple[float, float] = (1.0, 3.0),
        anisotropic: float = 0.5,
        subject_dropout: float = 0.0,
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        self.pairs = list(pairs)
        if not self.pairs:
            raise ConfigError("SynthesisPatches needs at least one (source, target) pair, got 0")
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ConfigError(f"patch_size must be a positive integer, got {patch_size!r}")
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise ConfigError(f"queries must be a positive integer, got {queries!r}")
        low, high = (float(v) for v in scale_range)
        if not 1.0 <= low <= high:
            raise ConfigError(f"scale_range must satisfy 1 <= low <= high, got {scale_range!r}")
        if not 0.0 <= anisotropic <= 1.0:
            raise ConfigError(f"anisotropic must be a probability in [0, 1], got {anisotropic!r}")
        if not 0.0 <= subject_dropout <= 1.0:
            raise ConfigError(f"subject_dropout must be a probability, got {subject_dropout!r}")
        if length is not None and (isinstance(length, bool) or length < 1):
            raise ConfigError(f"length must be a positive integer or None, got {length!r}")
        needed = {t.prompt for _, t in self.pairs}
        if subject_dropout > 0:
            needed |= {prompt_without_subject(prompt) for prompt in needed}
        missing = sorted(needed - set(prompt_ids))
        if missing:
            raise ConfigError(
                f"prompt_ids lacks {len(missing)} target prompt(s), e.g. {missing[0]!r}"
            )
        self.cache = cache
        self.prompt_ids = dict(prompt_ids)
        self.patch_size = patch_size
        self.queries = queries
        self.scale_range = (low, high)
        self.anisotropic = float(anisotropic)
        self.subject_dropout = float(subject_dropout)
        self.seed = int(seed)
        self.length = length
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (``>= 0``)."""
        if epoch < 0:
            raise ConfigError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.pairs)

    def _volumes(self, pair: int) -> tuple[np.ndarray, np.ndarray]:
        source, target = self.pairs[pair]
        source_volume, target_volume = self.cache.get(source.path), self.cache.get(target.path)
        if source_volume.shape != target_volume.shape:
            raise ImageError(
                f"{source.path} and {target.path} have different shapes "
                f"({source_volume.shape} vs {target_volume.shape}); pair co-registered images"
            )
        return source_volume, target_volume

    def parameters(self, index: int) -> PatchParameters:
        """Draw the random choices of sample ``index`` in the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        pair = int(index) % len(self.pairs)
        source, _ = self._volumes(pair)
        low, high = self.scale_range
        if rng.random() < self.anisotropic:
            drawn = rng.uniform(low, high, size=3)
        else:
            drawn = np.full(3, rng.uniform(low, high))
        size = np.maximum(np.rint(self.patch_size * drawn).astype(np.int64), self.patch_size)
        start = self._crop_start(rng, source, size)
        total = int(np.prod(size))
        flat = (
            rng.choice(total, size=self.queries, replace=False)
            if total >= self.queries
            else rng.integers(0, total, size=self.queries)
        )
        voxels = np.stack(np.unravel_index(flat, tuple(size)), axis=1).astype(np.int64)
        # Drawn last and only when asked, so that the other choices stay those of earlier runs.
        without_subject = bool(self.subject_dropout and rng.random() < self.subject_dropout)
        return PatchParameters(
            pair=pair,
            scale=tuple(float(n) / self.patch_size for n in size),  # type: ignore[arg-type]
            crop_start=tuple(int(v) for v in start),  # type: ignore[arg-type]
            crop_size=tuple(int(n) for n in size),  # type: ignore[arg-type]
            voxels=voxels,
            without_subject=without_subject,
        )

    @staticmethod
    def _crop_start(rng: np.random.Generator, source: np.ndarray, size: np.ndarray) -> np.ndarray:
        """A crop start whose centre voxel (``start + size // 2``) is in the brain if possible."""
        shape = np.asarray(source.shape)
        first_start = np.minimum(0, shape - size)  # crops larger than the volume overhang it
        last_start = np.maximum(0, shape - size)
        half = size // 2
        low = np.maximum(first_start + half, 0)  # centres that are inside the volume
        high = np.minimum(last_start + half, shape - 1)
        centre = low
        for _ in range(_CENTRE_TRIES):
            centre = rng.integers(low, high + 1)
            if source[tuple(centre)] > 0:
                return centre - half
        box = tuple(slice(a, b + 1) for a, b in zip(low, high, strict=True))
        inside = np.flatnonzero(np.asarray(source[box]) > 0)
        if inside.size:
            offset = np.unravel_index(inside[rng.integers(inside.size)], tuple(high - low + 1))
            centre = low + np.asarray(offset)
        return centre - half

    def render(self, parameters: PatchParameters) -> dict[str, torch.Tensor | int]:
        """The sample that ``parameters`` describe (no randomness)."""
        source_volume, target_volume = self._volumes(parameters.pair)
        start = np.asarray(parameters.crop_start)
        size = np.asarray(parameters.crop_size)
        p = self.patch_size
        sigmas = [fwhm_sigma(s) for s in parameters.scale]
        margin = np.asarray([gaussian_radius(s) for s in sigmas])
        extended = crop_padded(source_volume, start - margin, size + 2 * margin)
        matrices = []
        for axis in range(3):
            # Patch voxel j and crop voxel i share the LIIF coordinate -1 + (2j + 1) / P.
            centres = (np.arange(p) + 0.5) * size[axis] / p - 0.5 + margin[axis]
            matrices.append(resampling_matrix(extended.shape[axis], centres, sigmas[axis]))
        low_res = np.clip(apply_separable(extended, matrices), 0.0, 1.0)

        voxels = parameters.voxels
        positions = voxels + start
        inside = np.all((positions >= 0) & (positions < np.asarray(target_volume.shape)), axis=1)
        values = np.zeros(len(voxels), dtype=np.float32)
        inner = positions[inside]
        values[inside] = target_volume[inner[:, 0], inner[:, 1], inner[:, 2]]
        coord = ((2 * voxels + 1) / size - 1).astype(np.float32)
        cell = np.broadcast_to((2.0 / size).astype(np.float32), coord.shape)
        prompt = self.pairs[parameters.pair][1].prompt
        if parameters.without_subject:
            prompt = prompt_without_subject(prompt)
        return {
            "source": torch.from_numpy(low_res[None]),
            "coord": torch.from_numpy(coord),
            "cell": torch.from_numpy(np.ascontiguousarray(cell)),
            "target": torch.from_numpy(values[:, None]),
            "prompt": self.prompt_ids[prompt],
            "scale": torch.tensor(parameters.scale, dtype=torch.float32),
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return self.render(self.parameters(index))
