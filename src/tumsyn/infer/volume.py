"""Whole-volume synthesis: overlapping patches in the input's voxel grid, blended, any voxel size.

The network sees the input as its training did: a ``P^3`` patch of the (normalised) source at its
own resolution, queried at the centres of the target voxels that fall inside the patch's box, with
the target voxel size as the cell. Everything happens in the input's voxel grid, so any
orientation works and the output grid is ``io.target_grid`` of the input: the same field of view
in world space at the new voxel size (anisotropic sizes included).

- Patches overlap by ``overlap`` voxels; each prediction is weighted by a separable cosine window
  (highest at the patch centre, small at its edges), so seams between patches do not show.
- Patches without foreground (input ~ 0: the background of a brain-extracted image) are skipped.
- Patches are run ``batch`` at a time and their predictions accumulated into the output at once,
  so memory beyond the output volume is bounded by one batch of patches.
- The output is 0 outside the input's foreground, and is scaled back from [0, 1] by the input's
  99.5th percentile, so it has the input's intensity range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from tumsyn.data.volumes import normalise_percentiles
from tumsyn.io import Volume, target_grid
from tumsyn.resample import resample

__all__ = ["PatchPlan", "plan_patches", "synthesize_volume"]


@dataclass(frozen=True)
class PatchPlan:
    """Where the patches go: their start indices per axis in the input grid."""

    patch_size: int
    starts: tuple[np.ndarray, np.ndarray, np.ndarray]

    def __len__(self) -> int:
        return int(np.prod([len(s) for s in self.starts]))


def plan_patches(shape: Sequence[int], patch_size: int, overlap: int) -> PatchPlan:
    """Starts covering every voxel of ``shape``; the last patch of an axis ends at its edge."""
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap must be in [0, patch size {patch_size}), got {overlap}")
    stride = patch_size - overlap
    starts = []
    for n in shape:
        last = max(n - patch_size, 0)
        axis = list(range(0, last + 1, stride))
        if axis[-1] != last:
            axis.append(last)
        starts.append(np.asarray(axis))
    return PatchPlan(patch_size, tuple(starts))  # type: ignore[arg-type]


def _window(positions: np.ndarray) -> np.ndarray:
    """Cosine weight of coordinates in [-1, 1]: 1 at 0, small but non-zero at the edges."""
    return (0.5 * (1.0 + np.cos(np.pi * np.clip(positions, -1.0, 1.0))) + 1e-3).astype(np.float32)


def _targets_in_box(start: int, size: int, offset: float, step: float, count: int):
    """Target indices whose input position lies in the patch box, and their patch coordinates.

    The box of a patch starting at input voxel ``start`` is [start - 0.5, start + size - 0.5).
    """
    first = int(np.ceil((start - 0.5 - offset) / step - 1e-9))
    last = int(np.ceil((start + size - 0.5 - offset) / step - 1e-9))
    indices = np.arange(max(first, 0), min(last, count))
    positions = offset + step * indices  # in input voxel units
    coords = (-1.0 + (2.0 * (positions - start) + 1.0) / size).astype(np.float32)
    return indices, coords


def synthesize_volume(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    volume: Volume,
    voxel_size: Sequence[float],
    *,
    patch_size: int = 32,
    overlap: int = 8,
    batch: int = 4,
    device: torch.device | str = "cpu",
    foreground_threshold: float = 1e-3,
    progress: Callable[[Iterator], Iterator] | None = None,
) -> Volume:
    """Synthesize a whole volume at ``voxel_size`` from ``volume`` with a patch predictor.

    Args:
        predict: ``(patches (B, 1, P, P, P), coord (B, Q, 3), cell (B, Q, 3)) -> (B, Q, 1)``:
            the network with its prompt bound (see :mod:`tumsyn.infer.pipeline`).
        volume: the source image (any orientation).
        voxel_size: output voxel size in mm, along the input's array axes.
        patch_size, overlap: patch side and overlap in input voxels.
        batch: patches per network call.
        progress: wraps the patch-batch iterator (e.g. a tqdm bar).
    """
    source = normalise_percentiles(volume.data)
    input_grid = volume.grid
    output_grid = target_grid(input_grid, voxel_size)
    step = np.asarray(output_grid.voxel_size) / np.asarray(input_grid.voxel_size)
    offset = np.linalg.solve(input_grid.affine, output_grid.affine)[:3, 3]
    p = patch_size
    padded_shape = np.maximum(np.asarray(source.shape), p)
    padded = np.zeros(padded_shape, dtype=np.float32)
    padded[tuple(slice(0, n) for n in source.shape)] = source
    plan = plan_patches(padded.shape, p, overlap)

    numerator = np.zeros(output_grid.shape, dtype=np.float32)
    weights = np.zeros(output_grid.shape, dtype=np.float32)
    jobs = []
    for i in plan.starts[0]:
        for j in plan.starts[1]:
            for k in plan.starts[2]:
                patch = padded[i : i + p, j : j + p, k : k + p]
                if patch.max() <= foreground_threshold:
                    continue
                axes = [
                    _targets_in_box(int(s), p, offset[a], step[a], output_grid.shape[a])
                    for a, s in enumerate((i, j, k))
                ]
                if all(len(indices) for indices, _ in axes):
                    jobs.append((patch, axes))

    groups = [jobs[n : n + batch] for n in range(0, len(jobs), batch)]
    iterator = iter(groups) if progress is None else progress(iter(groups))
    cell_size = (2.0 * step / p).astype(np.float32)
    for group in iterator:
        _run_group(predict, group, cell_size, numerator, weights, device)
    output = np.divide(numerator, weights, out=np.zeros_like(numerator), where=weights > 0)
    foreground = resample((volume.data != 0).astype(np.float32), input_grid, output_grid) > 0.5
    top = float(np.percentile(volume.data[volume.data != 0], 99.5)) if volume.data.any() else 1.0
    output = np.where(foreground, np.clip(output, 0.0, None) * top, 0.0).astype(np.float32)
    return Volume(output, output_grid.affine)


def _run_group(predict, group, cell_size, numerator, weights, device) -> None:
    """Predict one batch of patches (padding the query lists to a common length)."""
    patches = torch.from_numpy(np.stack([patch for patch, _ in group])[:, None]).to(device)
    grids, coords = [], []
    for _, axes in group:
        (zi, zc), (yi, yc), (xi, xc) = axes
        mesh = np.stack(np.meshgrid(zc, yc, xc, indexing="ij"), axis=-1).reshape(-1, 3)
        grids.append((zi, yi, xi, zc, yc, xc))
        coords.append(mesh)
    longest = max(len(c) for c in coords)
    query = np.zeros((len(group), longest, 3), dtype=np.float32)
    for n, c in enumerate(coords):
        query[n, : len(c)] = c
    coord = torch.from_numpy(query).to(device)
    cell = torch.from_numpy(np.broadcast_to(cell_size, query.shape).copy()).to(device)
    with torch.no_grad():
        values = predict(patches, coord, cell).float().cpu().numpy()[..., 0]
    for n, (zi, yi, xi, zc, yc, xc) in enumerate(grids):
        shape = (len(zi), len(yi), len(xi))
        block = values[n, : int(np.prod(shape))].reshape(shape)
        window = _window(zc)[:, None, None] * _window(yc)[None, :, None] * _window(xc)[None, None]
        region = np.ix_(zi, yi, xi)
        numerator[region] += block * window
        weights[region] += window
