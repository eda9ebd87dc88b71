"""Resampling onto other grids: slabs give what one pass gives, and values are trilinear."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import tumsyn.resample
from helpers import oblique_affine
from tumsyn.io import Grid, target_grid
from tumsyn.resample import grid_positions, resample


@pytest.mark.parametrize("channels", [(), (2,)])
def test_resampling_in_slabs_equals_one_pass(monkeypatch, channels) -> None:
    """A target larger than a slab (here, 1000 voxels) is resampled slab by slab, each slab's
    coordinates computed from the whole grid's rows, so the values are the same to the bit."""
    rng = np.random.default_rng(0)
    volumes = rng.random((*channels, 9, 10, 11), dtype=np.float32)
    source = Grid((9, 10, 11), oblique_affine())
    target = target_grid(source, (0.7, 0.9, 0.6))
    whole = resample(volumes, source, target)
    monkeypatch.setattr(tumsyn.resample, "SLAB_VOXELS", 1000)
    slabbed = resample(volumes, source, target)
    assert slabbed.shape == (*channels, *target.shape) and slabbed.dtype == np.float32
    assert int(np.prod(target.shape[1:])) < 1000 < int(np.prod(target.shape))  # several slabs
    np.testing.assert_array_equal(slabbed, whole)


def test_resampling_is_trilinear_with_zero_outside() -> None:
    rng = np.random.default_rng(1)
    volume = rng.random((6, 7, 8), dtype=np.float32)
    source = Grid((6, 7, 8), np.diag([2.0, 2.0, 2.0, 1.0]))
    target = target_grid(source, (1.0, 1.0, 1.0))
    positions = grid_positions(source, target)
    expected = ndimage.map_coordinates(volume, positions, order=1, mode="constant", cval=0.0)
    inside = np.all((positions >= 0) & (positions <= np.reshape([5, 6, 7], (3, 1, 1, 1))), axis=0)
    result = resample(volume, source, target)
    np.testing.assert_allclose(result[inside], expected[inside], atol=1e-5)
    assert inside.any() and not inside.all()


def test_grid_positions_of_some_rows_are_those_rows_of_the_whole() -> None:
    source = Grid((5, 6, 7), oblique_affine())
    target = target_grid(source, (0.5, 0.5, 0.5))
    whole = grid_positions(source, target)
    np.testing.assert_array_equal(grid_positions(source, target, slice(3, 8)), whole[:, 3:8])
