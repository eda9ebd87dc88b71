"""The simulator's tissue contrasts against real images (``contrast_ranges.yaml``): every packaged
protocol keeps the textbook ordering and, where real ratios are measured, their range."""

from __future__ import annotations

import pytest

from tumsyn.io import Grid
from tumsyn.metadata import ImagingMetadata, default_protocol, load_protocols
from tumsyn.simulate import make_subject, render
from tumsyn.simulate.acquisition import acquire
from tumsyn.simulate.contrast import (
    contrast_family,
    contrast_problems,
    contrast_ranges,
    pure_tissue_ratios,
    tissue_signals,
)

DEFAULTS = [
    pytest.param(
        p.metadata.replace(field_strength=field),
        id=f"default-{p.name}-{p.metadata.modality}-{field:g}T",
    )
    for p in load_protocols("default")
    for field in (1.5, 3.0)
]
LIBRARY = [
    pytest.param(p.metadata, id=f"library-{p.name}-{p.metadata.modality}")
    for p in load_protocols("library")
]


@pytest.mark.parametrize("metadata", DEFAULTS + LIBRARY)
def test_every_packaged_protocol_looks_like_real_images_of_its_family(
    metadata: ImagingMetadata,
) -> None:
    assert contrast_problems(metadata) == []


def test_the_textbook_orderings_hold_for_every_default_contrast() -> None:
    for field in (1.5, 3.0):
        ratios = {
            m: pure_tissue_ratios(default_protocol(m).metadata.replace(field_strength=field))
            for m in ("T1w", "T2w", "FLAIR", "PD", "T2star")
        }
        assert ratios["T1w"]["GM/WM"] < 1 and ratios["T1w"]["CSF/WM"] < ratios["T1w"]["GM/WM"]
        assert ratios["T2w"]["CSF/WM"] > ratios["T2w"]["GM/WM"] > 1
        assert ratios["FLAIR"]["GM/WM"] > 1 > ratios["FLAIR"]["CSF/WM"]
        assert ratios["PD"]["GM/WM"] > 1 and ratios["T2star"]["GM/WM"] > 1


def test_an_estimated_band_is_reported_but_not_enforced() -> None:
    t2w = load_protocols("library")
    tse = next(p.metadata for p in t2w if p.name == "tse" and p.metadata.modality == "T2w")
    expected = contrast_ranges()[(contrast_family(tse), 3.0)]
    assert not expected.enforced
    low, high = expected.gm_wm
    inside = low <= pure_tissue_ratios(tse)["GM/WM"] <= high
    assert contrast_problems(tse) == [] and (contrast_problems(tse, estimates=True) == []) == inside


def test_a_protocol_with_a_wrong_ordering_is_caught() -> None:
    # FLAIR nulling grey matter instead of CSF (TI near GM's null): GM darker than WM.
    wrong = default_protocol("FLAIR").metadata.replace(ti=1000.0, tr=5000.0)
    assert any(problem.startswith("order") for problem in contrast_problems(wrong))


@pytest.mark.parametrize("modality", ["FLAIR", "PD", "T2w"])
def test_rendered_images_keep_grey_matter_brighter(modality: str) -> None:
    """The same check on rendered images of a virtual subject (jitter, partial volume), in pure
    tissue voxels, as the issue measured it."""
    subject = make_subject(0)
    metadata = default_protocol(modality).metadata.replace(voxel_size=(2.0, 2.0, 2.0))
    image, affine = render(subject, metadata)
    grid = Grid(image.shape, affine)
    pure = {t: acquire(subject.fraction(t), subject.grid, grid) > 0.95 for t in ("GM", "WM")}
    assert image[pure["GM"]].mean() > image[pure["WM"]].mean()


@pytest.mark.parametrize("metadata", LIBRARY)
def test_the_dura_is_darker_than_brain_tissue_without_contrast_agent(
    metadata: ImagingMetadata,
) -> None:
    """Brain-extracted real scans keep a dark rim of meninges; after gadolinium it enhances."""
    signals = tissue_signals(metadata)
    if metadata.modality == "T1CE":
        before = tissue_signals(metadata.replace(modality="T1w"))
        assert signals["DURA"] > 1.5 * before["DURA"]
    else:
        assert signals["DURA"] < 0.5 * min(signals["GM"], signals["WM"])
