"""Stage-1 data: whole volumes at one spacing, and batches of distinct prompts."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from tumsyn.data import DistinctPromptBatchSampler, ImageRecord, VolumeCache, WholeVolumes
from tumsyn.errors import ConfigError
from tumsyn.metadata import ImagingMetadata, format_prompt, parse_prompt
from tumsyn.metadata.augment import PromptAugmentation


def test_whole_volumes_shape_range_and_brain_centring(records, shared_cache, prompt_ids):
    volumes = WholeVolumes(records, shared_cache, prompt_ids, input_size=32, spacing=8.0)
    assert len(volumes) == len(records)
    item = volumes[2]
    image = item["image"]
    assert image.shape == (1, 32, 32, 32) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1 and image.max() > 0.5
    assert item["prompt"] == prompt_ids[records[2].prompt]
    assert torch.equal(volumes[2]["image"], image)  # deterministic
    # The brain (about 40 voxels at 4 mm) is about 20 voxels at 8 mm, centred in the 32^3 box.
    for other in [(1, 2), (0, 2), (0, 1)]:
        occupied = np.flatnonzero(image[0].numpy().any(axis=other))
        assert 12 <= occupied[-1] - occupied[0] <= 24
        assert abs((occupied[0] + occupied[-1]) / 2 - 15.5) <= 1.0
    cropped = WholeVolumes(records, shared_cache, prompt_ids, input_size=8, spacing=8.0)[2]
    assert cropped["image"].shape == (1, 8, 8, 8)
    np.testing.assert_array_equal(cropped["image"][0], image[0, 12:20, 12:20, 12:20])


def test_native_spacing_and_a_large_box_give_the_padded_volume(records, shared_cache, prompt_ids):
    volumes = WholeVolumes(records, shared_cache, prompt_ids, input_size=64, spacing=4.0)
    image = volumes[0]["image"][0].numpy()
    volume = np.asarray(shared_cache.get(records[0].path))
    assert np.isclose(image.sum(), volume.sum(), rtol=1e-5)  # nothing cut, nothing blurred
    corner = [
        int(np.flatnonzero(image.any(axis=o))[0]) - int(np.flatnonzero(volume.any(axis=o))[0])
        for o in [(1, 2), (0, 2), (0, 1)]
    ]
    box = tuple(slice(c, c + n) for c, n in zip(corner, volume.shape, strict=True))
    np.testing.assert_allclose(image[box], volume, atol=1e-6)


def test_downsampling_is_anti_aliased(tmp_path, write_nifti):
    # A 1 mm checkerboard seen at 3 mm: output voxel centres fall on input voxel centres, so a
    # plain trilinear zoom would return the checkerboard's extremes (std 0.5); the Gaussian of
    # FWHM 3 voxels averages them to grey.
    checkerboard = (np.indices((30, 30, 30)).sum(axis=0) % 2 + 1).astype(np.float32)
    path = write_nifti(checkerboard, "checkerboard_T1w.nii.gz")
    metadata = ImagingMetadata(modality="T1w")
    record = ImageRecord(path, "s", metadata, format_prompt(metadata))
    volumes = WholeVolumes(
        [record], VolumeCache(tmp_path / "cache"), {record.prompt: 0}, input_size=10, spacing=3.0
    )
    inner = volumes[0]["image"][0, 2:8, 2:8, 2:8].numpy()
    assert inner.mean() == pytest.approx(0.5, abs=0.05) and inner.std() < 0.05


def test_augmented_prompts_vary_only_voxel_size_age_and_sex(records, shared_cache, prompt_ids):
    augmentation = PromptAugmentation(voxel_size=(0.7, 3.0), anisotropic=0.5, subject_dropout=0.5)
    volumes = WholeVolumes(
        records, shared_cache, prompt_ids, input_size=8, spacing=8.0, augmentation=augmentation
    )
    texts = []
    for index, record in enumerate(records):
        item = volumes[index]
        assert item["prompt"] == prompt_ids[record.prompt]  # the recorded prompt, for batching
        said = parse_prompt(item["text"])
        assert all(0.7 <= v <= 3.0 and round(v, 1) == v for v in said.voxel_size)
        subject = {"age": None, "sex": None} if said.age is None else {}
        assert said == dataclasses.replace(record.metadata, voxel_size=said.voxel_size, **subject)
        texts.append(item["text"])
    assert any(parse_prompt(t).age is None for t in texts)
    assert any(len(set(parse_prompt(t).voxel_size)) == 3 for t in texts)
    assert [volumes[i]["text"] for i in range(len(records))] == texts  # (seed, epoch, index)
    volumes.set_epoch(1)
    assert [volumes[i]["text"] for i in range(len(records))] != texts
    plain = WholeVolumes(records, shared_cache, prompt_ids, input_size=8, spacing=8.0)
    assert "text" not in plain[0]


def test_whole_volumes_bad_arguments(records, shared_cache, prompt_ids):
    with pytest.raises(ConfigError, match="input_size must be a positive integer, got 0"):
        WholeVolumes(records, shared_cache, prompt_ids, input_size=0)
    with pytest.raises(ConfigError, match="spacing must be a positive number of mm, got -1"):
        WholeVolumes(records, shared_cache, prompt_ids, spacing=-1.0)
    with pytest.raises(ConfigError, match="prompt_ids lacks 14 prompt"):
        WholeVolumes(records, shared_cache, {})


def _prompts(counts: dict[str, int]) -> list[str]:
    prompts = [p for p, n in counts.items() for _ in range(n)]
    return [prompts[i] for i in np.random.default_rng(0).permutation(len(prompts))]


def test_batches_hold_distinct_prompts_and_cover_the_data_set():
    prompts = _prompts({f"p{i}": 3 + i % 3 for i in range(12)})  # 48 samples, 12 prompts
    sampler = DistinctPromptBatchSampler(prompts, 8, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    assert all(len(b) == 8 and len({prompts[i] for i in b}) == 8 for b in batches)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(48))


def test_batches_are_deterministic_per_seed_and_epoch():
    prompts = _prompts({f"p{i}": 4 for i in range(10)})
    sampler = DistinctPromptBatchSampler(prompts, 5, seed=2)
    again = DistinctPromptBatchSampler(prompts, 5, seed=2)
    sampler.set_epoch(3)
    again.set_epoch(3)
    assert list(sampler) == list(again) == list(sampler)
    again.set_epoch(4)
    assert list(sampler) != list(again)
    assert list(sampler) != list(DistinctPromptBatchSampler(prompts, 5, seed=3))


def test_fewer_prompts_than_the_batch_size_maximise_distinct_prompts():
    prompts = _prompts({"a": 10, "b": 10, "c": 10})
    sampler = DistinctPromptBatchSampler(prompts, 4, drop_last=False)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8 and len(batches[-1]) == 2
    assert sorted(i for b in batches for i in b) == list(range(30))
    assert all(len({prompts[i] for i in b}) == min(3, len(b)) for b in batches)
    assert all(max(Counter(prompts[i] for i in b).values()) <= 2 for b in batches)


def test_drop_last_and_bad_arguments():
    prompts = [f"p{i}" for i in range(10)]
    batches = list(DistinctPromptBatchSampler(prompts, 4))
    assert [len(b) for b in batches] == [4, 4]
    assert len({i for b in batches for i in b}) == 8
    assert [len(b) for b in DistinctPromptBatchSampler(prompts, 4, drop_last=False)] == [4, 4, 2]
    with pytest.raises(ConfigError, match="batch_size must be a positive integer, got 0"):
        DistinctPromptBatchSampler(prompts, 0)
