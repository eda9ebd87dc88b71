"""Stage-2 samples: shapes, ranges, exact targets, the degradation model, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch.utils.data import DataLoader

from tumsyn.data import SynthesisPatches, paired_records
from tumsyn.data.separable import fwhm_sigma
from tumsyn.errors import ConfigError
from tumsyn.metadata import prompt_without_subject

P = 8
Q = 300


@pytest.fixture(scope="module")
def pairs(records):
    return paired_records(records)


@pytest.fixture(scope="module")
def patches(pairs, shared_cache, prompt_ids) -> SynthesisPatches:
    return SynthesisPatches(pairs, shared_cache, prompt_ids, patch_size=P, queries=Q, seed=7)


def _same(a: dict, b: dict) -> bool:
    return all(
        torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k] for k in a
    )


def test_sample_shapes_and_ranges(patches, pairs, prompt_ids):
    assert len(patches) == len(pairs)
    for index in (0, 5, 40):
        sample = patches[index]
        assert set(sample) == {"source", "coord", "cell", "target", "prompt", "scale"}
        expected = {
            "source": (1, P, P, P),
            "coord": (Q, 3),
            "cell": (Q, 3),
            "target": (Q, 1),
            "scale": (3,),
        }
        for key, shape in expected.items():
            assert sample[key].shape == shape and sample[key].dtype == torch.float32, key
        assert sample["source"].min() >= 0 and sample["source"].max() <= 1
        assert sample["source"].max() > 0  # the crop is centred in the brain
        assert sample["target"].min() >= 0 and sample["target"].max() <= 1
        assert sample["coord"].abs().max() < 1
        assert torch.all((sample["scale"] >= 1) & (sample["scale"] <= 3 + 0.5 / P))
        size = torch.round(sample["scale"] * P)
        assert torch.allclose(sample["cell"], (2 / size).expand(Q, 3))
        assert sample["prompt"] == prompt_ids[pairs[index][1].prompt]


def test_targets_are_the_target_volume_at_the_queried_voxels(patches, pairs, shared_cache):
    for index in range(0, len(patches), 9):
        sample = patches[index]
        params = patches.parameters(index)
        size = 2 / sample["cell"][0].double().numpy()
        np.testing.assert_allclose(size, params.crop_size, atol=1e-3)
        # Invert the LIIF centre formula c = -1 + (2 i + 1) / n.
        fractional = ((sample["coord"].double().numpy() + 1) * size - 1) / 2
        voxels = np.rint(fractional).astype(int)
        np.testing.assert_allclose(fractional, voxels, atol=1e-3)
        assert np.all((voxels >= 0) & (voxels < size.round()))
        volume = shared_cache.get(pairs[index][1].path)
        where = voxels + np.asarray(params.crop_start)
        inside = np.all((where >= 0) & (where < volume.shape), axis=1)
        expected = np.zeros(Q, dtype=np.float32)
        expected[inside] = volume[tuple(where[inside].T)]
        np.testing.assert_array_equal(sample["target"][:, 0].numpy(), expected)
        assert len({tuple(v) for v in voxels}) == Q  # no repeats when the crop is big enough


def test_source_is_the_blurred_source_crop_sampled_at_patch_centres(patches, pairs, shared_cache):
    """Independent reference: scipy Gaussian (FWHM = scale) and trilinear map_coordinates."""
    for index in (1, 17, 60):
        params = patches.parameters(index)
        volume = np.asarray(shared_cache.get(pairs[index][0].path))
        sigma = [fwhm_sigma(s) for s in params.scale]
        blurred = ndimage.gaussian_filter(volume, sigma, mode="constant", truncate=4.0)
        axes = [
            start + (np.arange(P) + 0.5) * size / P - 0.5
            for start, size in zip(params.crop_start, params.crop_size, strict=True)
        ]
        where = np.stack(np.meshgrid(*axes, indexing="ij"))
        expected = ndimage.map_coordinates(blurred, where, order=1, mode="grid-constant")
        np.testing.assert_allclose(patches[index]["source"][0].numpy(), expected, atol=1e-5)
        centre = np.asarray(params.crop_start) + np.asarray(params.crop_size) // 2
        assert volume[tuple(centre)] > 0


def test_scale_one_without_blur_gives_the_crop_itself(pairs, shared_cache, prompt_ids):
    patches = SynthesisPatches(
        pairs, shared_cache, prompt_ids, patch_size=P, queries=P**3, scale_range=(1.0, 1.0)
    )
    sample, params = patches[3], patches.parameters(3)
    volume = shared_cache.get(pairs[3][0].path)
    box = tuple(slice(s, s + P) for s in params.crop_start)
    np.testing.assert_allclose(sample["source"][0].numpy(), volume[box], atol=1e-6)
    assert torch.equal(sample["scale"], torch.ones(3))


def test_same_seed_epoch_index_same_sample_and_epochs_differ(pairs, shared_cache, prompt_ids):
    def make(seed):
        return SynthesisPatches(pairs, shared_cache, prompt_ids, patch_size=P, queries=Q, seed=seed)

    first, second = make(1), make(1)
    first.set_epoch(3)
    second.set_epoch(3)
    assert _same(first[5], second[5])
    _ = second[6]  # order of access does not matter
    assert _same(first[5], second[5])
    second.set_epoch(4)
    assert not torch.equal(first[5]["coord"], second[5]["coord"])
    assert not torch.equal(first[5]["coord"], make(2)[5]["coord"])
    assert first.epoch == 3


def test_anisotropic_scales_occur_and_isotropic_ones_otherwise(pairs, shared_cache, prompt_ids):
    def scales(anisotropic):
        patches = SynthesisPatches(
            pairs, shared_cache, prompt_ids, patch_size=P, queries=10, anisotropic=anisotropic
        )
        return np.stack([patches.parameters(i).crop_size for i in range(40)])

    assert np.all(scales(0.0) == scales(0.0)[:, :1])
    mixed = scales(0.5)
    unequal = np.any(mixed != mixed[:, :1], axis=1)
    assert 5 < unequal.sum() < 35
    assert len(np.unique(mixed)) > 5


def test_crops_larger_than_the_volume_are_zero_padded(pairs, shared_cache, prompt_ids):
    patches = SynthesisPatches(
        pairs, shared_cache, prompt_ids, patch_size=20, queries=4000, scale_range=(3.0, 3.0)
    )
    shape = np.asarray(shared_cache.get(pairs[0][0].path).shape)  # (39, 48, 40) < 60
    params = patches.parameters(0)
    start, size = np.asarray(params.crop_start), np.asarray(params.crop_size)
    assert np.all(size == 60) and np.all((start <= 0) & (start >= shape - size))
    sample = patches[0]
    where = params.voxels + start
    outside = np.any((where < 0) | (where >= shape), axis=1)
    assert outside.any() and not sample["target"][outside].any()
    assert sample["source"].shape == (1, 20, 20, 20)


def test_queries_repeat_only_when_the_crop_is_smaller(pairs, shared_cache, prompt_ids):
    patches = SynthesisPatches(
        pairs, shared_cache, prompt_ids, patch_size=4, queries=100, scale_range=(1.0, 1.0), length=3
    )
    assert len(patches) == 3
    sample = patches[2]
    assert sample["coord"].shape == (100, 3)
    assert len(torch.unique(sample["coord"], dim=0)) <= 64
    with pytest.raises(IndexError, match="sample 3 out of range"):
        patches[3]


def test_persistent_workers_follow_set_epoch(pairs, shared_cache, prompt_ids):
    patches = SynthesisPatches(pairs, shared_cache, prompt_ids, patch_size=P, queries=Q, length=2)
    loader = DataLoader(patches, batch_size=2, num_workers=1, persistent_workers=True)
    for epoch in (0, 1):
        patches.set_epoch(epoch)
        (batch,) = list(loader)
        assert torch.equal(batch["coord"][1], patches[1]["coord"])
        assert batch["prompt"].tolist() == [patches[0]["prompt"], patches[1]["prompt"]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"patch_size": 0}, "patch_size must be a positive integer, got 0"),
        ({"queries": 2.5}, "queries must be a positive integer, got 2.5"),
        ({"scale_range": (0.5, 2.0)}, r"scale_range must satisfy 1 <= low <= high"),
        ({"scale_range": (3.0, 2.0)}, r"scale_range must satisfy 1 <= low <= high"),
        ({"anisotropic": 1.5}, r"anisotropic must be a probability in \[0, 1\], got 1.5"),
        ({"length": 0}, "length must be a positive integer or None, got 0"),
    ],
)
def test_bad_arguments(pairs, shared_cache, prompt_ids, arguments, message):
    with pytest.raises(ConfigError, match=message):
        SynthesisPatches(pairs, shared_cache, prompt_ids, **arguments)


def test_missing_prompt_ids_and_pairs_are_refused(pairs, shared_cache, prompt_ids):
    with pytest.raises(ConfigError, match="prompt_ids lacks 14 target prompt"):
        SynthesisPatches(pairs, shared_cache, {})
    with pytest.raises(ConfigError, match="at least one"):
        SynthesisPatches([], shared_cache, prompt_ids)


def test_subject_dropout_leaves_out_age_and_sex_of_some_prompts(pairs, shared_cache, prompt_ids):
    everything = sorted({*prompt_ids, *(prompt_without_subject(p) for p in prompt_ids)})
    ids = {prompt: i for i, prompt in enumerate(everything)}
    names = {i: prompt for prompt, i in ids.items()}
    plain = SynthesisPatches(pairs, shared_cache, ids, patch_size=8, queries=16, length=40)
    dropped = SynthesisPatches(pairs, shared_cache, ids, patch_size=8, queries=16, length=40,
                               subject_dropout=0.5)  # fmt: skip
    without = 0
    for index in range(40):
        a, b = plain.parameters(index), dropped.parameters(index)
        # The other random choices are those of a run without dropout.
        assert a.crop_start == b.crop_start and np.array_equal(a.voxels, b.voxels)
        prompt = names[dropped.render(b)["prompt"]]
        target = pairs[b.pair][1].prompt
        assert prompt == (prompt_without_subject(target) if b.without_subject else target)
        without += b.without_subject
    assert 8 <= without <= 32  # about half of 40
    assert "Age: None; Gender: None" in prompt_without_subject(pairs[0][1].prompt)
    with pytest.raises(ConfigError, match="prompt_ids lacks"):
        SynthesisPatches(pairs, shared_cache, prompt_ids, subject_dropout=0.1)
    with pytest.raises(ConfigError, match="subject_dropout must be a probability"):
        SynthesisPatches(pairs, shared_cache, ids, subject_dropout=1.5)
