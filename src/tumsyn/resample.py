"""Sampling volumes at arbitrary voxel positions and on other grids (trilinear, via torch).

``torch.nn.functional.grid_sample`` does what ``scipy.ndimage.map_coordinates(order=1)`` does, but
on all cores and for several channels in one pass, which is what makes simulating a cohort of
whole-brain volumes cheap. Positions outside the source give 0 (brain-extracted images have a zero
background).
"""

from __future__ import annotations

import numpy as np

from tumsyn.io import Grid

__all__ = ["grid_positions", "resample", "sample_at"]


def sample_at(volumes: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Trilinear values of ``volumes`` at fractional voxel ``positions``.

    Args:
        volumes: ``(C, I, J, K)`` or ``(I, J, K)`` array.
        positions: ``(3, *shape)`` voxel coordinates (i, j, k) into ``volumes``.

    Returns:
        ``(C, *shape)`` or ``shape`` float32 array (0 outside the source).
    """
    import torch
    import torch.nn.functional as F

    single = volumes.ndim == 3
    source = torch.from_numpy(
        np.ascontiguousarray(volumes[None] if single else volumes, np.float32)
    )
    out_shape = positions.shape[1:]
    sizes = np.asarray(source.shape[1:], dtype=np.float32)
    # grid_sample wants (x, y, z) = (k, j, i) normalised to [-1, 1] with align_corners=True.
    scale = (2.0 / np.maximum(sizes - 1, 1)).astype(np.float32)
    grid = np.empty((*out_shape, 3), dtype=np.float32)
    for axis in range(3):
        grid[..., 2 - axis] = positions[axis] * scale[axis] - 1.0
    sampled = F.grid_sample(
        source[None],
        torch.from_numpy(grid.reshape(1, -1, 1, 1, 3)),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    values = sampled.reshape(source.shape[0], *out_shape).numpy()
    return values[0] if single else values


def grid_positions(source: Grid, target: Grid, rows: slice = slice(None)) -> np.ndarray:
    """Voxel coordinates in ``source`` of every voxel centre of ``target``, ``(3, *shape)``;
    with ``rows``, only those indices along the target's first axis."""
    mapping = np.linalg.solve(source.affine, target.affine)  # target voxel -> source voxel
    axes = [np.arange(n, dtype=np.float32) for n in target.shape]
    axes[0] = axes[0][rows]
    positions = np.empty((3, *(len(a) for a in axes)), dtype=np.float32)
    for row in range(3):
        m = mapping[row].astype(np.float32)
        positions[row] = (
            m[0] * axes[0][:, None, None]
            + m[1] * axes[1][None, :, None]
            + m[2] * axes[2][None, None]
        ) + m[3]
    return positions


#: Target voxels resampled in one pass: the coordinate arrays of a pass take about 28 bytes a
#: voxel (positions, grid_sample's grid and temporaries), so a 0.5 mm whole-brain output (58 M
#: voxels) would need 1.6 GB at once; in slabs of this size, under 0.5 GB.
SLAB_VOXELS = 2**24


def resample(volumes: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """Trilinear resampling of ``volumes`` (on ``source``) onto the ``target`` grid, in slabs
    along the target's first axis of at most :data:`SLAB_VOXELS` voxels (same values).

    Identical grids return a float32 copy untouched by interpolation.
    """
    if tuple(source.shape) == tuple(target.shape) and np.allclose(source.affine, target.affine):
        return np.array(volumes, dtype=np.float32)
    shape = tuple(target.shape)
    channels = () if volumes.ndim == 3 else volumes.shape[:1]
    result = np.empty((*channels, *shape), dtype=np.float32)
    step = max(1, SLAB_VOXELS // int(np.prod(shape[1:])))
    for start in range(0, shape[0], step):
        rows = slice(start, min(start + step, shape[0]))
        result[..., rows, :, :] = sample_at(volumes, grid_positions(source, target, rows))
    return result
