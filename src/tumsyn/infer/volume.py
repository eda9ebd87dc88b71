"""Whole-volume synthesis: overlapping patches in the input's voxel grid, blended, any voxel size.

The network sees the input as its training did: a ``P^3`` patch of the (normalised) source at its
own resolution, queried at the centres of the target voxels that fall inside the patch's box, with
the target voxel size as the cell. Everything happens in the input's voxel grid, so any
orientation works and the output grid is ``io.target_grid`` of the input: the same field of view
in world space at the new voxel size (anisotropic sizes included).

- Patches overlap by ``overlap`` voxels, so every voxel is decoded with context on all sides. Each
  output voxel is decoded by the patch it is most central in, except within ``blend`` voxels of
  the middle of an overlap, where the two patches' predictions are mixed by cosine ramps that
  sum to one, so seams do not show. Encoding costs ``(P / (P - overlap))^3`` per voxel; decoding
  about ``((P - overlap + 2 blend) / (P - overlap))^3`` rather than the ``8x`` of the official
  50%-overlap scheme.
- Only the bounding box of the foreground (input above ~0, plus a margin) is cut into patches,
  evenly spaced, and
  patches without foreground (the background of a brain-extracted image) are skipped.
- Patches are run ``batch`` at a time and their predictions accumulated into the output at once,
  so memory beyond the output volume is bounded by one batch of patches.
- The output is 0 outside the input's foreground, and is scaled back from [0, 1] by the input's
  99.5th percentile, so it has the input's intensity range.
"""

from __future__ import annotations

import itertools
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
    """Evenly spaced starts covering every voxel of ``shape``, neighbours overlapping by at least
    ``overlap``: the fewest patches that do, so no patch is an almost-copy of its neighbour."""
    if not 0 <= overlap < patch_size:
        raise ValueError(f"overlap must be in [0, patch size {patch_size}), got {overlap}")
    starts = []
    for n in shape:
        count = 1 if n <= patch_size else -(-(n - overlap) // (patch_size - overlap))
        starts.append(np.round(np.linspace(0, max(n - patch_size, 0), count)).astype(int))
    return PatchPlan(patch_size, tuple(starts))  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Span:
    """Where one patch decodes along an axis, in input voxel units: ``[low, high)``, with the
    cosine ramps ``[rise - blend, rise + blend)`` and ``[fall - blend, fall + blend)``."""

    low: float
    high: float
    rise: float | None
    fall: float | None
    blend: float

    def weight(self, positions: np.ndarray) -> np.ndarray:
        weight = np.ones(len(positions), dtype=np.float64)
        for middle, sign in ((self.rise, 1.0), (self.fall, -1.0)):
            if middle is not None and self.blend > 0:
                t = np.clip((positions - middle) / (2 * self.blend) + 0.5, 0.0, 1.0)
                weight *= 0.5 - sign * 0.5 * np.cos(np.pi * t)
        return weight.astype(np.float32)


def _spans(starts: np.ndarray, size: int, blend: float) -> list[_Span]:
    """Each patch decodes from the middle of its overlap with the previous patch to the middle of
    its overlap with the next (plus ``blend``); the first and last reach the grid's edges."""
    boxes = [(s - 0.5, s + size - 0.5) for s in starts]
    middles = [(boxes[k + 1][0] + boxes[k][1]) / 2 for k in range(len(boxes) - 1)]
    spans = []
    for k, (low, high) in enumerate(boxes):
        rise = middles[k - 1] if k > 0 else None
        fall = middles[k] if k < len(middles) else None
        spans.append(_Span(
            low if rise is None else max(low, rise - blend),
            high if fall is None else min(high, fall + blend),
            rise, fall, blend,
        ))  # fmt: skip
    return spans


def _targets_in_span(span: _Span, start: int, size: int, offset: float, step: float, count: int):
    """Target indices whose input position lies in the span, their patch coordinates and
    blending weights."""
    first = int(np.ceil((span.low - offset) / step - 1e-9))
    last = int(np.ceil((span.high - offset) / step - 1e-9))
    indices = np.arange(max(first, 0), min(last, count))
    positions = offset + step * indices  # in input voxel units
    coords = (-1.0 + (2.0 * (positions - start) + 1.0) / size).astype(np.float32)
    return indices, coords, span.weight(positions)


def _only(targets: tuple[np.ndarray, np.ndarray, np.ndarray], index: int):
    """The part of one axis's ``(indices, coords, weights)`` at output index ``index``."""
    keep = targets[0] == index
    return tuple(part[keep] for part in targets)


def synthesize_volume(
    predict: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    volume: Volume,
    voxel_size: Sequence[float],
    *,
    patch_size: int = 32,
    overlap: int = 8,
    blend: float = 2.0,
    batch: int = 4,
    device: torch.device | str = "cpu",
    foreground_threshold: float = 1e-3,
    normalise: Callable[[np.ndarray], np.ndarray] = normalise_percentiles,
    progress: Callable[[Iterator], Iterator] | None = None,
    plane: tuple[int, int] | None = None,
) -> Volume:
    """Synthesize a whole volume at ``voxel_size`` from ``volume`` with a patch predictor.

    Args:
        predict: ``(patches (B, 1, P, P, P), coord (B, Q, 3), cell (B, Q, 3)) -> (B, Q, 1)``:
            the network with its prompt bound (see :mod:`tumsyn.infer.pipeline`).
        volume: the source image (any orientation).
        voxel_size: output voxel size in mm, along the input's array axes.
        patch_size, overlap: patch side and overlap in input voxels.
        blend: half-width of the cosine ramp at each seam, in input voxels (at most
            ``overlap / 2``; 0 cuts hard at the middle of the overlaps).
        batch: patches per network call.
        normalise: maps the source to [0, 1] as the model's training did.
        progress: wraps the patch-batch iterator (e.g. a tqdm bar).
        plane: ``(axis, index)`` of the output grid: decode only that plane, from only the
            patches that reach it (a live preview); the rest of the output stays 0.
    """
    source = normalise(volume.data)
    input_grid = volume.grid
    output_grid = target_grid(input_grid, voxel_size)
    step = np.asarray(output_grid.voxel_size) / np.asarray(input_grid.voxel_size)
    offset = np.linalg.solve(input_grid.affine, output_grid.affine)[:3, 3]
    p = patch_size
    inside = np.argwhere(source > foreground_threshold)
    if not len(inside):
        return Volume(np.zeros(output_grid.shape, dtype=np.float32), output_grid.affine)
    # Only the bounding box of the foreground is cut into patches (padded to at least a patch),
    # with ``overlap`` voxels of background around it: the network saw background *inside* its
    # training patches, and a patch's own edge (zero padding after every layer) is not the same.
    low = np.maximum(inside.min(axis=0) - overlap, 0)
    high = np.minimum(inside.max(axis=0) + 1 + overlap, source.shape)
    region = source[tuple(slice(a, b) for a, b in zip(low, high, strict=True))]
    padded = np.zeros(np.maximum(region.shape, p), dtype=np.float32)
    padded[tuple(slice(0, n) for n in region.shape)] = region
    plan = plan_patches(padded.shape, p, overlap)

    numerator = np.zeros(output_grid.shape, dtype=np.float32)
    weights = np.zeros(output_grid.shape, dtype=np.float32)
    blend = min(blend, overlap / 2)
    per_axis = [
        list(zip(starts, _spans(starts + low[a], p, blend), strict=True))
        for a, starts in enumerate(plan.starts)
    ]
    jobs = []
    for (i, si), (j, sj), (k, sk) in itertools.product(*per_axis):
        patch = padded[i : i + p, j : j + p, k : k + p]
        if patch.max() <= foreground_threshold:
            continue
        axes = [
            _targets_in_span(span, int(start + low[a]), p, offset[a], step[a], output_grid.shape[a])
            for a, (span, start) in enumerate(((si, i), (sj, j), (sk, k)))
        ]
        if plane is not None:
            axes[plane[0]] = _only(axes[plane[0]], plane[1])
        if all(len(indices) for indices, _, _ in axes):
            jobs.append((patch, axes))

    groups = [jobs[n : n + batch] for n in range(0, len(jobs), batch)]
    iterator = groups if progress is None else progress(groups)  # a list: bars know the total
    cell_size = (2.0 * step / p).astype(np.float32)
    for group in iterator:
        _run_group(predict, group, cell_size, numerator, weights, device)
    # In place from here on: at 0.5 mm output each whole-grid array is a quarter of a gigabyte.
    np.divide(numerator, weights, out=numerator, where=weights > 0)  # 0 where no patch reached
    output, nonzero = numerator, volume.data != 0
    del weights
    background = resample(nonzero.astype(np.float32), input_grid, output_grid) <= 0.5
    top = float(np.percentile(volume.data[nonzero], 99.5)) if nonzero.any() else 1.0
    np.clip(output, 0.0, None, out=output)
    output *= np.float32(top)
    output[background] = 0.0
    return Volume(output, output_grid.affine)


def _run_group(predict, group, cell_size, numerator, weights, device) -> None:
    """Predict one batch of patches (padding the query lists to a common length)."""
    patches = torch.from_numpy(np.stack([patch for patch, _ in group])[:, None]).to(device)
    grids, coords = [], []
    for _, axes in group:
        (zi, zc, zw), (yi, yc, yw), (xi, xc, xw) = axes
        mesh = np.stack(np.meshgrid(zc, yc, xc, indexing="ij"), axis=-1).reshape(-1, 3)
        grids.append((zi, yi, xi, zw, yw, xw))
        coords.append(mesh)
    longest = max(len(c) for c in coords)
    query = np.zeros((len(group), longest, 3), dtype=np.float32)
    for n, c in enumerate(coords):
        query[n, : len(c)] = c
    coord = torch.from_numpy(query).to(device)
    cell = torch.from_numpy(np.broadcast_to(cell_size, query.shape).copy()).to(device)
    with torch.inference_mode():
        values = predict(patches, coord, cell).float().cpu().numpy()[..., 0]
    for n, (zi, yi, xi, zw, yw, xw) in enumerate(grids):
        shape = (len(zi), len(yi), len(xi))
        block = values[n, : int(np.prod(shape))].reshape(shape)
        window = zw[:, None, None] * yw[None, :, None] * xw[None, None]
        region = np.ix_(zi, yi, xi)
        numerator[region] += block * window
        weights[region] += window
