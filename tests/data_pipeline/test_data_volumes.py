"""Percentile normalisation and the memory-mapped volume cache."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tumsyn.data import VolumeCache, normalise_percentiles
from tumsyn.data.volumes import normalise_like_official, normalise_scale
from tumsyn.errors import ConfigError, ImageError, InputFileError
from tumsyn.io import load_nifti


def test_percentiles_map_to_0_and_1_and_background_stays_0():
    rng = np.random.default_rng(0)
    data = np.zeros((10, 10, 10), dtype=np.float32)
    data[2:8, 2:8, 2:8] = rng.uniform(100, 200, size=(6, 6, 6))
    out = normalise_percentiles(data, 5, 95)
    assert out.dtype == np.float32 and out.shape == data.shape
    assert out.min() == 0.0 and out.max() == 1.0
    assert np.all(out[data == 0] == 0)
    inside = data[data != 0]
    low, high = np.percentile(inside, [5, 95])
    expected = np.clip((inside - low) / (high - low), 0, 1)
    np.testing.assert_allclose(out[data != 0], expected, atol=1e-6)
    assert np.mean(out[data != 0] == 1.0) == pytest.approx(0.05, abs=0.01)


def test_official_scaling_uses_the_whole_volume():
    # The official demo's percentile_clip: 0.01th / 99.9th percentiles of every voxel, the lower
    # one clamped at 0 (so a background of zeros stays 0 and negative values clip to 0).
    rng = np.random.default_rng(1)
    data = np.zeros((20, 20, 20), dtype=np.float32)
    data[5:15, 5:15, 5:15] = rng.uniform(100, 200, size=(10, 10, 10))
    data[0, 0, 0] = -50.0
    top = np.percentile(data, 99.9)
    expected = np.clip(data / top, 0, 1)
    np.testing.assert_allclose(normalise_like_official(data), expected, atol=1e-6)
    assert np.mean(normalise_like_official(data) == 1.0) == pytest.approx(0.001, abs=2e-4)
    assert not normalise_like_official(np.zeros((3, 3, 3))).any()


def test_scaling_keeps_the_darkest_tissue_apart_from_the_background():
    # A T2w-like image: white matter (signal 1) fills most of the brain, CSF (4) a little.
    data = np.zeros((20, 20, 20), dtype=np.float32)
    data[2:18, 2:18, 2:18] = 1.0
    data[8:12, 8:12, 8:12] = 4.0
    scaled = normalise_scale(data)
    assert scaled.dtype == np.float32 and scaled.shape == data.shape
    np.testing.assert_allclose(scaled[data == 1.0], 0.25)  # its ratio to CSF, kept
    np.testing.assert_allclose(scaled[data == 4.0], 1.0)
    assert not scaled[data == 0].any()
    assert normalise_percentiles(data)[data == 1.0].max() == 0.0  # what it avoids
    hot = data.copy()
    hot[10, 10, 10] = 40.0  # one voxel above the 99.5th percentile is clipped
    assert normalise_scale(hot)[10, 10, 10] == 1.0
    assert normalise_scale(hot)[data == 1.0].max() == pytest.approx(0.25)
    assert not normalise_scale(np.zeros((3, 3, 3))).any()


def test_percentiles_of_constant_and_empty_images():
    constant = np.where(np.arange(27).reshape(3, 3, 3) % 2, 7.0, 0.0)
    np.testing.assert_array_equal(normalise_percentiles(constant), constant / 7)
    assert not normalise_percentiles(np.zeros((2, 2, 2))).any()
    with pytest.raises(ConfigError, match="0 <= low < high <= 100"):
        normalise_percentiles(constant, 60, 40)


def test_cache_writes_once_and_returns_a_read_only_memmap(tmp_path, records):
    path = records[0].path
    cache = VolumeCache(tmp_path / "cache")
    first = cache.get(path)
    (stored,) = list((tmp_path / "cache").iterdir())
    assert stored == cache.cache_path(path) and stored.suffix == ".npy"
    written = stored.stat().st_mtime_ns
    os.utime(stored, ns=(written - 10**9, written - 10**9))  # make a rewrite visible
    second = cache.get(path)
    assert stored.stat().st_mtime_ns == written - 10**9
    for volume in (first, second):
        assert isinstance(volume, np.memmap) and not volume.flags.writeable
        assert volume.dtype == np.float32 and volume.min() == 0.0 and volume.max() == 1.0
        with pytest.raises(ValueError, match="read-only"):
            volume[0, 0, 0] = 1.0
    original = load_nifti(path).data
    np.testing.assert_array_equal(second, normalise_percentiles(original))
    assert np.all(second[original == 0] == 0)


def test_a_changed_image_gets_a_new_cache_entry(tmp_path, records):
    image = tmp_path / "image.nii.gz"
    shutil.copy(records[0].path, image)
    cache = VolumeCache(tmp_path / "cache")
    before = cache.cache_path(image)
    cache.get(image)
    shutil.copy(records[1].path, image)
    os.utime(image, ns=(1, 1))
    assert cache.cache_path(image) != before
    np.testing.assert_array_equal(cache.get(image), VolumeCache(tmp_path / "other").get(image))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2


def test_cache_errors(tmp_path, write_nifti):
    cache = VolumeCache(tmp_path / "cache")
    with pytest.raises(InputFileError, match="absent.nii.gz: no such image file"):
        cache.get(tmp_path / "absent.nii.gz")
    with pytest.raises(ImageError, match="every voxel is zero"):
        cache.get(write_nifti(np.zeros((4, 4, 4)), "zero.nii.gz"))
    assert not list((tmp_path / "cache").iterdir())  # nothing half-written left behind
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="the cache folder is a file"):
        VolumeCache(tmp_path / "file")
