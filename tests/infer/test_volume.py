"""Whole-volume patch synthesis: coordinates, blending, grids, skipping empty patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers import oblique_affine
from tumsyn.infer.volume import plan_patches, synthesize_volume
from tumsyn.io import Volume, target_grid


def copy_source(patches: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """A predictor that returns the source itself, interpolated at the query points."""
    grid = coord.flip(-1)[:, :, None, None, :]
    sampled = F.grid_sample(
        patches, grid, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[:, :, :, 0, 0].transpose(1, 2)


def _brain(shape=(30, 34, 28)) -> np.ndarray:
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).astype(np.float32)
    centre = (np.asarray(shape) - 1)[:, None, None, None] / 2
    radius = np.asarray(shape)[:, None, None, None] * 0.35
    inside = (((grid - centre) / radius) ** 2).sum(axis=0) <= 1
    smooth = 100 + 40 * np.sin(grid[0] / 4) + 30 * np.cos(grid[1] / 5) + 5 * grid[2] / shape[2]
    return np.where(inside, smooth, 0.0).astype(np.float32)


def _world_centre(data: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """World position of the centre of mass of the brain (the non-zero voxels)."""
    mean = np.array(np.nonzero(data > 0), dtype=float).mean(axis=1)
    return affine[:3, :3] @ mean + affine[:3, 3]


def test_copying_predictor_reproduces_the_input() -> None:
    data = _brain()
    volume = Volume(data, oblique_affine((1.0, 1.0, 1.0)))
    out = synthesize_volume(copy_source, volume, (1.0, 1.0, 1.0), patch_size=12, overlap=4)
    np.testing.assert_allclose(out.affine, volume.affine)
    # The input is normalised ([p0.5, p99.5] -> [0, 1]) and the output scaled back by p99.5.
    low, top = np.percentile(data[data > 0], [0.5, 99.5])
    expected = np.where(data > 0, (np.clip(data, low, top) - low) / (top - low) * top, 0)
    np.testing.assert_allclose(out.data, expected, rtol=1e-4, atol=1e-3 * top)


@pytest.mark.parametrize("voxel_size", [(0.5, 0.5, 0.5), (2.0, 2.0, 2.0), (1.0, 1.0, 3.0)])
def test_output_overlays_the_input_in_world_space(voxel_size) -> None:
    data = _brain()
    volume = Volume(data, oblique_affine((1.0, 1.5, 2.0), angle_deg=25))
    out = synthesize_volume(copy_source, volume, voxel_size, patch_size=10, overlap=2, batch=3)
    assert np.allclose(np.linalg.norm(out.affine[:3, :3], axis=0), voxel_size)
    assert out.data.shape == target_grid(volume.grid, voxel_size).shape
    shift = np.linalg.norm(_world_centre(out.data, out.affine) - _world_centre(data, volume.affine))
    assert shift < 0.25 * max(voxel_size)


def test_small_inputs_are_padded_and_empty_patches_skipped() -> None:
    data = np.zeros((40, 8, 40), dtype=np.float32)
    data[2:10, 2:6, 2:10] = 50.0
    calls = []

    def counting(patches, coord, cell):
        calls.append(len(patches))
        return copy_source(patches, coord, cell)

    out = synthesize_volume(counting, Volume(data, np.eye(4)), (1, 1, 1), patch_size=16, overlap=0)
    assert out.data.shape == data.shape
    assert sum(calls) == 1  # of 9 patches (3 x 1 x 3), only the one holding the block runs
    assert out.data[5, 4, 5] > 0 and out.data[30, 4, 30] == 0


def test_patch_plan_covers_every_voxel() -> None:
    plan = plan_patches((50, 16, 9), patch_size=16, overlap=4)
    assert [list(s) for s in plan.starts] == [[0, 11, 23, 34], [0], [0]]
    with pytest.raises(ValueError, match="overlap"):
        plan_patches((10, 10, 10), 8, 8)
    for n in range(1, 120):
        for size, overlap in ((16, 4), (32, 8), (60, 30)):
            starts = plan_patches((n, 1, 1), size, overlap).starts[0]
            assert starts[0] == 0 and starts[-1] + size >= n
            gaps = np.diff(starts)
            assert np.all(gaps <= size - overlap)  # every pair overlaps by >= overlap
            # The fewest patches that can: one fewer would leave a gap.
            assert len(starts) == 1 or (len(starts) - 2) * (size - overlap) + size < n


def test_each_voxel_is_decoded_about_once() -> None:
    # The official scheme (50% overlap, every patch decoded whole) decodes each voxel 8 times;
    # here only the seams' blending zones are decoded twice.
    data = np.full((40, 40, 40), 100.0, dtype=np.float32)
    queries = []

    def counting(patches, coord, cell):
        queries.append(coord.shape[0] * coord.shape[1])
        return copy_source(patches, coord, cell)

    volume = Volume(data, np.eye(4))
    out = synthesize_volume(counting, volume, (1, 1, 1), patch_size=16, overlap=4, batch=1)
    np.testing.assert_allclose(out.data, 100.0, rtol=1e-5)
    # 3 patches per axis, two seams each 2 x blend (2) voxels wide: (40 + 2 * 4)^3 decoded.
    assert sum(queries) == 48**3


def test_only_the_foreground_box_is_cut_into_patches() -> None:
    data = np.zeros((64, 64, 64), dtype=np.float32)
    data[40:52, 8:20, 30:42] = 10.0  # a 12^3 block in a corner of a big empty grid
    patches = []

    def counting(patch, coord, cell):
        patches.append(len(patch))
        return copy_source(patch, coord, cell)

    # The box with its 4-voxel margin is 20^3: one 24^3 patch instead of 27 over the grid.
    out = synthesize_volume(counting, Volume(data, np.eye(4)), (1, 1, 1), patch_size=24, overlap=4)
    assert sum(patches) == 1
    np.testing.assert_allclose(out.data, data, rtol=1e-5)
