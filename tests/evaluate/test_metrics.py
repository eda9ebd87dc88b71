"""Metrics against values worked out by hand, and the bootstrap interval's properties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tumsyn.evaluate.metrics import contrast_errors, mae, normalise, psnr, ssim, tissue_means
from tumsyn.evaluate.report import bootstrap_interval, mean_and_interval


def two_level_volume() -> np.ndarray:
    """4^3 voxels, half 0 and half 1: normalisation leaves it unchanged (min 0, 99.5th pct 1)."""
    volume = np.zeros((4, 4, 4), dtype=np.float32)
    volume[2:] = 1.0
    return volume


def test_psnr_and_mae_of_a_known_error() -> None:
    reference = two_level_volume()
    image = reference.copy()
    image[0, :2] = 0.5  # 8 of 64 voxels off by 0.5; min and 99.5th percentile are unchanged
    everywhere = np.ones(reference.shape, dtype=bool)
    # MSE = 8 * 0.25 / 64 = 1/32, MAE = 8 * 0.5 / 64 = 1/16
    assert psnr(reference, image, everywhere) == pytest.approx(10 * math.log10(32), abs=1e-6)
    assert mae(reference, image, everywhere) == pytest.approx(1 / 16, abs=1e-7)
    # An affine change of intensities is undone by the normalisation.
    assert mae(reference, 3 * image + 7, everywhere) == pytest.approx(1 / 16, abs=1e-6)


def test_identical_images_are_perfect() -> None:
    reference = two_level_volume() + 1.0
    assert psnr(reference, reference) == math.inf
    assert mae(reference, reference) == 0.0


def test_mae_only_counts_the_mask() -> None:
    reference = two_level_volume()
    image = reference.copy()
    image[0, :2] = 0.5
    mask = np.zeros(reference.shape, dtype=bool)
    mask[2:] = True  # the changed voxels lie outside
    mask[0, 3] = True  # one zero voxel, so the mask's minimum stays 0
    assert mae(reference, image, mask) == 0.0


def test_psnr_and_ssim_unchanged_on_the_default_mask() -> None:
    """The existing behaviour: mask = reference > 0, and SSIM of an image with itself is 1."""
    rng = np.random.default_rng(0)
    reference = rng.uniform(1, 2, size=(12, 12, 12)).astype(np.float32)
    assert ssim(reference, reference) == pytest.approx(1.0)
    assert normalise(reference).max() == 1.0


def labelled_blocks() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """8^3 voxels in four slabs along the first axis: background, CSF, GM, WM."""
    labels = np.zeros((8, 8, 8), dtype=np.int8)
    for value, start in ((1, 2), (2, 4), (3, 6)):
        labels[start : start + 2] = value
    tissues = {"CSF": labels == 1, "GM": labels == 2, "WM": labels == 3}
    return labels, tissues


def test_contrast_errors_of_labelled_blocks() -> None:
    labels, tissues = labelled_blocks()
    everywhere = np.ones(labels.shape, dtype=bool)
    truth = labels.astype(np.float32)  # T1-like: CSF 1, GM 2, WM 3 -> GM/WM 2/3, CSF/WM 1/3
    pred = np.choose(labels, [0, 3, 2, 1]).astype(np.float32)  # T2-like: GM/WM 2, CSF/WM 3
    errors = contrast_errors(truth, pred, tissues, everywhere)
    assert errors["gm_wm"] == pytest.approx(2 / (2 / 3) - 1)
    assert errors["csf_wm"] == pytest.approx(3 / (1 / 3) - 1)
    assert contrast_errors(truth, 5 * truth, tissues, everywhere) == pytest.approx(
        {"gm_wm": 0.0, "csf_wm": 0.0}, abs=1e-6
    )


def test_a_lesion_map_adds_the_lesion_to_white_matter_error() -> None:
    """Lesions of half the WM slab, twice as bright as WM in the truth and WM-grey in the
    prediction: the lesion/WM ratio is 1 against 2 (error -0.5); the tissue errors stay 0."""
    labels, tissues = labelled_blocks()
    lesions = np.zeros(labels.shape, dtype=bool)
    lesions[6:, :4] = True
    tissues["WM"] = (labels == 3) & ~lesions
    truth = np.where(lesions, 6.0, labels).astype(np.float32)
    pred = labels.astype(np.float32)  # the same image, lesions left at WM's 3
    everywhere = np.ones(labels.shape, dtype=bool)
    errors = contrast_errors(truth, pred, tissues, everywhere, lesions=lesions)
    assert set(errors) == {"gm_wm", "csf_wm", "lesion_wm"}
    assert errors["lesion_wm"] == pytest.approx(-0.5)
    assert errors["gm_wm"] == pytest.approx(0.0) and errors["csf_wm"] == pytest.approx(0.0)


def test_probability_maps_weight_the_means() -> None:
    image = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    weights = np.zeros((2, 2, 2))
    weights.flat[[1, 2]] = [1.0, 0.25]  # (1 * 1 + 0.25 * 2) / 1.25 = 1.2
    assert tissue_means(image, {"GM": weights}) == {"GM": pytest.approx(1.2)}


def test_contrast_errors_refuse_missing_or_empty_tissues() -> None:
    labels, tissues = labelled_blocks()
    truth = labels.astype(np.float32)
    with pytest.raises(ValueError, match="CSF are missing"):
        contrast_errors(truth, truth, {"GM": tissues["GM"], "WM": tissues["WM"]})
    with pytest.raises(ValueError, match="GM map is empty"):
        contrast_errors(truth, truth, {**tissues, "GM": np.zeros(labels.shape)})


def test_bootstrap_interval_is_seeded_and_holds_the_mean() -> None:
    values = np.random.default_rng(1).normal(30.0, 2.0, size=20)
    first = bootstrap_interval(values, seed=0)
    assert first == bootstrap_interval(values, seed=0)
    assert first != bootstrap_interval(values, seed=1)
    low, high = first
    assert low < values.mean() < high


def test_bootstrap_interval_of_constant_values_is_a_point() -> None:
    assert bootstrap_interval([4.0, 4.0, 4.0], seed=3) == (4.0, 4.0)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_interval([], seed=0)


def test_one_value_or_an_infinite_mean_has_no_interval() -> None:
    assert mean_and_interval([17.5], seed=0) == (17.5, None, None)
    assert mean_and_interval([20.0, math.inf], seed=0) == (math.inf, None, None)
    values = [1.0, 2.0, 4.0]
    assert mean_and_interval(values, seed=2) == (
        pytest.approx(7.0 / 3.0),
        *bootstrap_interval(values, seed=2),
    )
