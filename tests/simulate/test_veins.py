"""Veins: drawn from a seed, traced where their family runs, and dark on SWI as in real images."""

from __future__ import annotations

import numpy as np

from tumsyn.io import Grid
from tumsyn.metadata import default_protocol
from tumsyn.simulate import Anatomy, render
from tumsyn.simulate.acquisition import acquire
from tumsyn.simulate.contrast import contrast_ranges, ratio_problems
from tumsyn.simulate.template import brain_depth, lateral_ventricles, load_template
from tumsyn.simulate.veins import VEIN_KINDS, draw_veins, vein_fraction


def test_same_generator_same_veins_and_every_family_drawn() -> None:
    first, again = (draw_veins(np.random.default_rng(5)) for _ in range(2))
    assert first == again
    assert first != draw_veins(np.random.default_rng(6))
    assert {vein.kind for vein in first} == set(VEIN_KINDS)


def test_veins_fill_a_few_millilitres_inside_the_brain() -> None:
    template = load_template()
    fraction = vein_fraction(draw_veins(np.random.default_rng(5)), template.grid.shape)
    assert fraction.max() <= 0.95 and fraction.min() >= 0
    # Visible cerebral veins: a few millilitres, nearly all inside the brain (cortical veins
    # reach past its edge by their radius).
    assert 2_000 < fraction.sum() < 20_000
    assert fraction[template.brain > 0.05].sum() > 0.9 * fraction.sum()


def test_medullary_veins_leave_the_ventricles_and_cortical_veins_stay_at_the_surface() -> None:
    template = load_template()
    veins = draw_veins(np.random.default_rng(5))
    medullary = vein_fraction(tuple(v for v in veins if v.kind == "medullary"), template.grid.shape)
    cortical = vein_fraction(tuple(v for v in veins if v.kind == "cortical"), template.grid.shape)
    assert medullary[template.wm > 0.5].sum() > 0.6 * medullary.sum()
    assert cortical[brain_depth() < 4.0].sum() > 0.8 * cortical.sum()
    assert medullary[lateral_ventricles()].sum() < 0.05 * medullary.sum()


def test_veins_are_the_darkest_tissue_of_a_rendered_swi(young_subject: Anatomy) -> None:
    vein = young_subject.fraction("VEIN")
    assert vein.sum() > 1_000
    metadata = default_protocol("SWI").metadata.replace(voxel_size=(1.0, 1.0, 1.0))
    image, affine = render(young_subject, metadata)
    grid = Grid(image.shape, affine)
    mostly = {t: acquire(young_subject.fraction(t), young_subject.grid, grid) > 0.6
              for t in ("VEIN", "GM", "WM")}  # fmt: skip
    means = {t: float(image[mask].mean()) for t, mask in mostly.items()}
    assert means["VEIN"] < 0.6 * min(means["GM"], means["WM"])


def test_a_table_that_wants_dark_veins_catches_bright_ones() -> None:
    swi = contrast_ranges()[("SWI", 3.0)]
    assert swi.vein_wm is not None
    fine = {"GM/WM": 0.8, "CSF/WM": 0.7, "VEIN/WM": 0.2}
    assert ratio_problems(swi, fine) == []
    bright = ratio_problems(swi, {**fine, "VEIN/WM": 0.9}, ranges=False)
    assert bright == ["veins are not darker than grey and white matter"]
    # Images measured without a vein map are checked for what they have.
    assert ratio_problems(swi, {"GM/WM": 0.8, "CSF/WM": 0.7}) == []
