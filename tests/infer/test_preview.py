"""Live preview: a single output plane equals that plane of the whole synthesis, and the source's
patch features are computed once whatever the prompt."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

import tumsyn
from tumsyn.examples import example_t1w
from tumsyn.infer.preview import FeatureCache, PlanePreview
from tumsyn.io import as_volume


@pytest.fixture(scope="module")
def preview() -> PlanePreview:
    """The bundled model on a 40 x 44 x 36 crop of the bundled T1w (several patches of 24)."""
    synth = tumsyn.Synthesizer.from_checkpoint(device="cpu", patch_size=24, overlap=6)
    image = nib.load(example_t1w())
    crop = image.slicer[20:60, 25:69, 20:56]
    volume = as_volume(np.asarray(crop.dataobj, dtype=np.float32), crop.affine, name="crop")
    return PlanePreview(synth, volume)


@pytest.mark.parametrize(("axis", "voxel_size"), [(0, 2.0), (1, 1.5), (2, 2.0)])
def test_a_plane_is_that_plane_of_the_whole_volume(preview, axis, voxel_size) -> None:
    target = preview.synthesizer.target("FLAIR", voxel_size=(voxel_size,) * 3)
    whole = preview.synthesizer.synthesize_arrays(preview.volume, target).data
    index = whole.shape[axis] // 2
    plane = preview.plane(target, axis, index)
    assert plane.shape == np.take(whole, index, axis=axis).shape
    assert np.abs(plane).max() > 0
    np.testing.assert_allclose(plane, np.take(whole, index, axis=axis), rtol=1e-5, atol=1e-5)


def test_features_are_computed_once_per_patch_whatever_the_prompt(preview) -> None:
    first = preview.synthesizer.target("T2w", te=80.0, voxel_size=(2.0, 2.0, 2.0))
    second = preview.synthesizer.target("T2w", te=120.0, voxel_size=(2.0, 2.0, 2.0))
    a = preview.plane(first, 2, 10)
    cache = preview.cache_for(first)
    misses = cache.misses
    b = preview.plane(second, 2, 10)
    assert preview.cache_for(second) is cache
    assert cache.misses == misses and cache.hits > 0
    assert not np.array_equal(a, b)  # the prompt changed what the same features decode to


def test_the_cache_keeps_within_its_budget() -> None:
    calls = []

    def encode(patches: torch.Tensor) -> torch.Tensor:
        calls.append(len(patches))
        return patches.repeat(1, 2, 1, 1, 1)

    one = 2 * 4**3 * 4  # bytes of one patch's features
    cache = FeatureCache(encode, max_bytes=2 * one)
    patches = torch.arange(3 * 4**3, dtype=torch.float32).reshape(3, 1, 4, 4, 4)
    out = cache(patches)
    assert torch.equal(out, patches.repeat(1, 2, 1, 1, 1)) and calls == [3]
    assert len(cache._kept) == 2  # the oldest was let go
    cache(patches[1:])
    assert calls == [3]  # the two kept were reused
    cache(patches[:1])
    assert calls == [3, 1]


def test_a_plane_outside_the_grid_is_refused(preview) -> None:
    target = preview.synthesizer.target("T2w", voxel_size=(2.0, 2.0, 2.0))
    with pytest.raises(IndexError, match="outside the output"):
        preview.plane(target, 0, 40)
