"""Tissue segmentation with Atropos on a phantom of known tissues, and the comparison measures."""

from __future__ import annotations

import math
import tempfile

import numpy as np
import pytest

from tumsyn.evaluate.morphometry import (
    LABELS,
    TISSUE_ORDER,
    compare_segmentations,
    dice,
    regional_volumes,
    segment_tissues,
    tissue_volumes,
)

SIZE = 40
NOISE = 0.05
LEVELS = (0.2, 0.5, 0.8)  # darkest to brightest


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    """40^3 labels: a WM sphere (radius 9) in a GM shell (14) in a CSF shell (18), 0 outside.

    The centre is off the grid's middle so that the octants of the bounding box differ.
    """
    grid = np.indices((SIZE, SIZE, SIZE)).astype(np.float32)
    centre = np.array([19.0, 20.5, 19.5], dtype=np.float32)[:, None, None, None]
    radius = np.sqrt(((grid - centre) ** 2).sum(axis=0))
    labels = np.zeros((SIZE, SIZE, SIZE), dtype=np.int8)
    labels[radius < 18] = LABELS["CSF"]
    labels[radius < 14] = LABELS["GM"]
    labels[radius < 9] = LABELS["WM"]
    return labels


def render(labels: np.ndarray, modality: str, seed: int = 0) -> np.ndarray:
    """The phantom as an image of ``modality``: tissues at LEVELS in TISSUE_ORDER, plus noise."""
    image = np.zeros(labels.shape, dtype=np.float32)
    for tissue, level in zip(TISSUE_ORDER[modality], LEVELS, strict=True):
        image[labels == LABELS[tissue]] = level
    noise = np.random.default_rng(seed).normal(0.0, NOISE, labels.shape)
    return image + noise.astype(np.float32)


@pytest.mark.parametrize("modality", ["T1w", "T2w", "FLAIR"])
def test_atropos_recovers_the_phantom_tissues(phantom: np.ndarray, modality: str) -> None:
    # T1w, T2w and FLAIR cover the three distinct tissue orderings: the same anatomy must get the
    # same labels whichever tissue is darkest.
    mask = phantom > 0
    labels = segment_tissues(render(phantom, modality), mask, modality)
    assert labels.dtype == np.int8 and labels.shape == phantom.shape
    assert not labels[~mask].any()
    assert set(np.unique(labels[mask])) == set(LABELS.values())
    for tissue, score in dice(labels, phantom).items():
        assert score > 0.9, f"{modality} {tissue} Dice {score:.3f}"


def test_segmentation_is_deterministic_and_leaves_tempdir_alone(phantom: np.ndarray) -> None:
    image, mask = render(phantom, "T1w", seed=1), phantom > 0
    before = tempfile.tempdir
    first = segment_tissues(image, mask, "T1w", spacing=(1.0, 1.2, 0.9))
    second = segment_tissues(image, mask, "T1w", spacing=(1.0, 1.2, 0.9))
    np.testing.assert_array_equal(first, second)
    assert tempfile.tempdir == before


def test_bad_arguments_are_rejected(phantom: np.ndarray) -> None:
    image, mask = render(phantom, "T1w"), phantom > 0
    with pytest.raises(ValueError, match="unknown modality 'DWI': expected one of T1w, T1CE"):
        segment_tissues(image, mask, "DWI")
    with pytest.raises(ValueError, match="mask is empty"):
        segment_tissues(image, np.zeros_like(mask), "T1w")
    with pytest.raises(ValueError, match="must match"):
        segment_tissues(image, mask[:-1], "T1w")
    with pytest.raises(ValueError, match="must be 3D"):
        segment_tissues(image[0], mask[0], "T1w")
    with pytest.raises(ValueError, match="no tissues to tell apart"):
        segment_tissues(np.ones_like(image), mask, "T1w")  # Atropos itself would just fail


def test_dice_by_hand() -> None:
    a = np.array([1, 1, 2, 2, 3, 0])
    b = np.array([1, 2, 2, 2, 0, 0])
    # CSF: |A|=2, |B|=1, both 1 -> 2/3; GM: |A|=2, |B|=3, both 2 -> 4/5; WM: |A|=1, |B|=0 -> 0
    assert dice(a, b) == pytest.approx({"CSF": 2 / 3, "GM": 4 / 5, "WM": 0.0})
    # A tissue absent from both agrees perfectly.
    assert dice(np.array([1, 0]), np.array([1, 0])) == {"CSF": 1.0, "GM": 1.0, "WM": 1.0}
    with pytest.raises(ValueError, match="differ in shape"):
        dice(a, b[:-1])


def test_volumes_add_up(phantom: np.ndarray) -> None:
    mask = phantom > 0
    volumes = tissue_volumes(phantom, voxel_volume_ml=0.002)
    for tissue, value in LABELS.items():
        assert volumes[tissue] == pytest.approx(0.002 * np.count_nonzero(phantom == value))
    regions = regional_volumes(phantom, mask, voxel_volume_ml=0.002)
    assert len(regions) == 24 and "CSF/x0y1z0" in regions
    for tissue in LABELS:
        octants = [v for k, v in regions.items() if k.startswith(f"{tissue}/")]
        assert len(octants) == 8
        assert sum(octants) == pytest.approx(volumes[tissue])


def test_octants_split_the_bounding_box_at_its_middle() -> None:
    labels = np.zeros((6, 6, 6), dtype=np.int8)
    labels[1:5, 1:5, 1:5] = LABELS["GM"]  # a 4^3 box: the split falls between indices 2 and 3
    labels[1, 1, 1] = LABELS["WM"]
    regions = regional_volumes(labels, labels > 0, voxel_volume_ml=1.0)
    assert regions["WM/x0y0z0"] == 1.0
    assert regions["GM/x0y0z0"] == 7.0
    assert all(
        regions[f"GM/x{i}y{j}z{k}"] == 8.0
        for i in (0, 1)
        for j in (0, 1)
        for k in (0, 1)
        if (i, j, k) != (0, 0, 0)
    )


def test_identical_segmentations_compare_perfectly(phantom: np.ndarray) -> None:
    scores = compare_segmentations(phantom, phantom, phantom > 0, voxel_volume_ml=0.001)
    for tissue in LABELS:
        assert scores[f"dice_{tissue}"] == 1.0
        assert scores[f"volume_difference_{tissue}_percent"] == 0.0
    assert scores["regional_volume_r"] == pytest.approx(1.0)


def test_comparison_of_a_shifted_segmentation(phantom: np.ndarray) -> None:
    pred = phantom.copy()
    pred[(phantom == LABELS["WM"]) & (np.indices(phantom.shape)[0] < 19)] = LABELS["GM"]
    scores = compare_segmentations(pred, phantom, phantom > 0, voxel_volume_ml=0.001)
    assert scores["dice_CSF"] == 1.0
    assert scores["dice_WM"] < 1.0 and scores["dice_GM"] < 1.0
    assert scores["volume_difference_WM_percent"] < 0 < scores["volume_difference_GM_percent"]
    assert scores["volume_difference_CSF_percent"] == 0.0
    assert 0.5 < scores["regional_volume_r"] < 1.0


def test_an_empty_segmentation_has_no_regional_correlation(phantom: np.ndarray) -> None:
    # All 24 regional volumes of an empty segmentation are 0: Pearson's r is undefined, so nan.
    empty = np.zeros_like(phantom)
    scores = compare_segmentations(empty, phantom, phantom > 0, voxel_volume_ml=0.001)
    assert math.isnan(scores["regional_volume_r"])
    assert scores["dice_GM"] == 0.0
    assert scores["volume_difference_GM_percent"] == -100.0
    backwards = compare_segmentations(phantom, empty, phantom > 0, voxel_volume_ml=0.001)
    assert backwards["volume_difference_GM_percent"] == math.inf
