"""Randomised inputs (SynthSR-style): seeded draws, every family and ordering, images that are
what the draw says."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest

from tumsyn.simulate import make_subject
from tumsyn.simulate.contrast import in_textbook_order, tissue_signals
from tumsyn.simulate.randomize import InputRandomizer, draw_protocol, render_input
from tumsyn.simulate.sequences import sequence_for, signal
from tumsyn.simulate.tissues import TISSUES, tissue_properties


@pytest.fixture(scope="module")
def subject():
    return make_subject(3)


def test_a_seed_fixes_the_whole_draw() -> None:
    randomizer = InputRandomizer()
    first = randomizer.make_params(np.random.default_rng(7))
    assert first == randomizer.make_params(np.random.default_rng(7))
    assert first != randomizer.make_params(np.random.default_rng(8))


def test_protocols_cover_every_family_and_are_physical() -> None:
    rng = np.random.default_rng(0)
    drawn = [draw_protocol(rng) for _ in range(400)]
    assert {str(m.modality) for m in drawn} == {"T1w", "T2w", "FLAIR", "PD", "T2star", "SWI"}
    assert {sequence_for(m) for m in drawn if m.modality == "T1w"} == {
        "mprage", "spoiled_gradient_echo", "spin_echo"
    }  # fmt: skip
    for metadata in drawn:
        assert metadata.te < metadata.tr and (metadata.ti is None or metadata.ti < metadata.tr)
        values = signal(tissue_properties(metadata.field_strength), metadata)
        assert np.isfinite(values).all()


def test_textbook_order_keeps_only_protocols_whose_tissues_are_in_their_familys_order() -> None:
    def protocols(randomizer: InputRandomizer) -> list:
        return [randomizer.make_params(np.random.default_rng(seed)).protocol for seed in range(300)]

    wide = protocols(InputRandomizer(physics_probability=1.0))
    kept = protocols(InputRandomizer(physics_probability=1.0, textbook_order=True))
    assert not all(in_textbook_order(p) for p in wide if p.modality == "T1w")  # e.g. a PD-like GRE
    assert all(in_textbook_order(p) for p in kept)
    assert {str(p.modality) for p in kept} == {"T1w", "T2w", "FLAIR", "PD", "T2star", "SWI"}
    assert len({p.tr for p in kept if p.modality == "T1w"}) > 50  # timings still random
    gm, wm = (tissue_signals(next(p for p in kept if p.modality == "T2w"))[t] for t in ("GM", "WM"))
    assert gm > wm  # T2w: CSF > GM > WM


def test_random_contrasts_take_every_grey_white_ordering() -> None:
    randomizer = InputRandomizer(physics_probability=0.0)
    draws = [randomizer.make_params(np.random.default_rng(seed)) for seed in range(40)]
    gm, wm = TISSUES.index("GM"), TISSUES.index("WM")
    ratios = [d.signals[gm] / d.signals[wm] for d in draws]
    assert min(ratios) < 1 < max(ratios) and all(d.protocol is None for d in draws)


def test_thick_slices_and_voxel_sizes_stay_in_their_ranges() -> None:
    randomizer = InputRandomizer(thick_probability=1.0)
    for seed in range(30):
        sizes = list(randomizer.make_params(np.random.default_rng(seed)).voxel_size)
        in_plane = max(set(sizes), key=sizes.count)  # the value two axes share
        (thick,) = [size for size in sizes if size != in_plane]
        assert sizes.count(in_plane) == 2 and 0.7 <= in_plane <= 3.0 and 2.0 <= thick <= 6.0


def test_the_image_is_what_the_draw_says(subject) -> None:
    draw = InputRandomizer().make_params(np.random.default_rng(2))
    image, affine = render_input(subject, draw)
    assert image.dtype == np.float32 and np.isfinite(image).all() and image.min() >= 0
    assert np.allclose(nib.affines.voxel_sizes(affine), draw.voxel_size, atol=1e-3)
    assert image[0].max() == 0 and image[:, :, -1].max() == 0  # nothing outside the head
    assert (image > 0).mean() > 0.2


def test_a_looser_skull_strip_keeps_more_voxels(subject) -> None:
    draw = InputRandomizer().make_params(np.random.default_rng(5))
    tight = render_input(subject, replace(draw, mask_margin_mm=-2.0))[0]
    loose = render_input(subject, replace(draw, mask_margin_mm=3.0))[0]
    assert (loose > 0).sum() > (tight > 0).sum()


@pytest.mark.parametrize("voxel", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.0, 1.0, 5.0)])
def test_a_patch_renders_from_the_part_of_the_subject_it_needs(subject, voxel) -> None:
    """Rendering a patch grid from ``Anatomy.around`` equals cutting it from the whole image."""
    from tumsyn.io import Grid
    from tumsyn.metadata import default_protocol
    from tumsyn.simulate import render_on
    from tumsyn.simulate.render import scan_grid

    whole = scan_grid(subject, voxel)
    start = np.asarray(whole.shape) // 3
    size = np.minimum(np.asarray(whole.shape) // 3, 24)
    affine = whole.affine.copy()
    affine[:3, 3] += whole.affine[:3, :3] @ start
    patch = Grid(tuple(int(n) for n in size), affine)
    metadata = default_protocol("FLAIR").metadata
    part = subject.around(patch)
    assert part.fractions.size < subject.fractions.size / 4
    expected = render_on(subject, metadata, whole)[
        tuple(slice(a, a + n) for a, n in zip(start, size, strict=True))
    ]
    np.testing.assert_allclose(render_on(part, metadata, patch), expected, rtol=1e-4, atol=1e-2)


def test_an_input_patch_is_a_box_of_the_input_grid(subject) -> None:
    from tumsyn.io import Grid
    from tumsyn.simulate.randomize import input_grid

    draw = InputRandomizer(thick_probability=0.0).make_params(np.random.default_rng(11))
    whole = input_grid(subject, draw)
    affine = whole.affine.copy()
    affine[:3, 3] += whole.affine[:3, :3] @ (np.asarray(whole.shape) // 2 - 8)
    image, patch_affine = render_input(subject, draw, Grid((16, 16, 16), affine))
    assert image.shape == (16, 16, 16) and np.allclose(patch_affine, affine)
    assert (image > 0).mean() > 0.5  # the centre of the head is brain
