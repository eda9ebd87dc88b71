"""Normalised volumes, decoded once and memory-mapped by every DataLoader worker.

Decompressing a ``.nii.gz`` takes far longer than cutting a patch out of it, and training cuts
thousands of patches per image. :class:`VolumeCache` therefore stores each image's normalised
float32 array as an ``.npy`` file once and hands out read-only memory maps: workers share the
operating system's page cache instead of each holding and re-reading its own copies.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from tumsyn.errors import ConfigError, InputFileError
from tumsyn.io import atomic_output, load_nifti

__all__ = [
    "NORMALISERS",
    "VolumeCache",
    "normalise_percentiles",
    "normalise_scale",
    "recorded_normalisation",
]

# Part of every cache key: change it when the normalisation changes, and old files are ignored.
_CACHE_VERSION = "percentiles-0.5-99.5-v1"


def normalise_percentiles(data: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Map the ``low`` and ``high`` percentiles of the non-zero voxels to 0 and 1, clipped.

    Zero voxels (the background of a brain-extracted image) stay 0. An image whose non-zero
    voxels all hold one value maps them to 1; an all-zero image stays all zero.

    Args:
        data: a volume of any shape.
        low, high: percentiles, ``0 <= low < high <= 100``.

    Returns:
        float32 array of ``data``'s shape with values in [0, 1].
    """
    if not 0.0 <= low < high <= 100.0:
        raise ConfigError(f"percentiles must satisfy 0 <= low < high <= 100, got {low}, {high}")
    data = np.asarray(data, dtype=np.float32)
    foreground = data != 0
    values = data[foreground]
    if values.size == 0:
        return np.zeros(data.shape, dtype=np.float32)
    bottom, top = np.percentile(values, [low, high])
    if top <= bottom:
        return foreground.astype(np.float32)
    scaled = (data - np.float32(bottom)) / np.float32(top - bottom)
    np.clip(scaled, 0.0, 1.0, out=scaled)
    scaled[~foreground] = 0.0
    return scaled


def normalise_like_official(data: np.ndarray) -> np.ndarray:
    """The official demo's input scaling, for the published weights: the 0.01th and 99.9th
    percentiles of the *whole* volume (background included; the lower one at least 0) map to 0
    and 1, clipped. Same formula as the official ``utils.percentile_clip``."""
    data = np.asarray(data, dtype=np.float32)
    bottom, top = np.percentile(data, [0.01, 99.9])
    bottom = max(float(bottom), 0.0)
    if top <= bottom:
        return (data > bottom).astype(np.float32)
    return np.clip((data - np.float32(bottom)) / np.float32(top - bottom), 0.0, 1.0)


def normalise_scale(data: np.ndarray, high: float = 99.5) -> np.ndarray:
    """Divide by the ``high`` percentile of the non-zero voxels, clipped to [0, 1].

    Unlike :func:`normalise_percentiles` nothing is subtracted, so the darkest tissue keeps its
    ratio to the brightest: pure white matter of a T2w (a quarter of its CSF) or the CSF of a
    T1w would otherwise sit at the lower percentile, that is at 0, like the background, and a
    network could tell them apart only by their surroundings (docs/decisions.md). Zero (and
    negative, which no magnitude image has) voxels become 0; an all-zero image stays all zero.
    """
    data = np.asarray(data, dtype=np.float32)
    foreground = data > 0
    if not foreground.any():
        return np.zeros(data.shape, dtype=np.float32)
    top = np.float32(np.percentile(data[foreground], high))
    scaled = np.clip(data / top, 0.0, 1.0)
    scaled[~foreground] = 0.0  # NaN too
    return scaled


# How a model's inputs are scaled, by the name a checkpoint records as "input_normalisation".
NORMALISERS = {
    "tumsyn": normalise_percentiles,
    "scale": normalise_scale,
    "official": normalise_like_official,
}


def recorded_normalisation(extra: dict) -> str:
    """The input scaling a checkpoint's facts name; checkpoints from before the choice existed
    were all trained with "tumsyn"."""
    return extra.get("input_normalisation", "tumsyn")


class VolumeCache:
    """Normalised volumes stored as ``.npy`` files in ``cache_dir`` and memory-mapped.

    The file of an image is ``<sha1 of its resolved path, mtime and size>.npy``, so an image that
    is replaced or edited gets a new entry; it is written once, through a temporary file and
    ``os.replace``, so concurrent workers never see a half-written array. The cache holds only its
    folder name, so it pickles cheaply into DataLoader workers.

    Args:
        cache_dir: folder for the cached arrays (created if needed); safe to delete any time.

    Example:
        >>> cache = VolumeCache("/tmp/tumsyn-cache")  # doctest: +SKIP
        >>> volume = cache.get("sub-01/anat/sub-01_T1w.nii.gz")  # read-only float32 in [0, 1]
    """

    def __init__(self, cache_dir: str | os.PathLike) -> None:
        self.cache_dir = Path(cache_dir)
        if self.cache_dir.exists() and not self.cache_dir.is_dir():
            raise ConfigError(f"{self.cache_dir}: the cache folder is a file")
        self.cache_dir.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"VolumeCache({str(self.cache_dir)!r})"

    def cache_path(self, path: str | os.PathLike) -> Path:
        """Where the cached array of the image ``path`` lives (whether or not it exists yet)."""
        resolved = Path(path).resolve()
        try:
            stat = resolved.stat()
        except FileNotFoundError:
            raise InputFileError(f"{path}: no such image file") from None
        key = f"{_CACHE_VERSION}\0{resolved}\0{stat.st_mtime_ns}\0{stat.st_size}"
        return self.cache_dir / f"{hashlib.sha1(key.encode('utf-8')).hexdigest()}.npy"

    def get(self, path: str | os.PathLike) -> np.ndarray:
        """The normalised float32 volume of the NIfTI image ``path``, as a read-only memory map.

        Raises:
            InputFileError, ImageError: the image is missing or unusable (see ``load_nifti``).
        """
        target = self.cache_path(path)
        if not target.is_file():
            data = normalise_percentiles(load_nifti(path).data)
            with atomic_output(target) as temporary:
                np.save(temporary, data)
        return np.load(target, mmap_mode="r")
