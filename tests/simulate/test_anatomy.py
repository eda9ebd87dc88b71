from __future__ import annotations

import numpy as np

from tumsyn.simulate import Anatomy, make_subject
from tumsyn.simulate.anatomy import draw_anatomy
from tumsyn.simulate.template import brain_depth, load_template
from tumsyn.simulate.tissues import TISSUES


def test_template_fractions_are_a_partition_of_the_brain() -> None:
    template = load_template()
    brain = template.brain
    assert template.gm.min() >= 0 and template.wm.min() >= 0 and template.csf.min() >= -1e-6
    assert brain.max() <= 1 + 1e-5
    # About 1.9 l of brain and CSF in the MNI152 template, about 0.2 l of it CSF.
    assert 1.7e6 < brain.sum() < 2.1e6
    assert 0.1 < template.csf.sum() / brain.sum() < 0.2
    assert template.dura.min() >= 0 and (template.dura <= template.brain + 1e-6).all()


def test_dura_is_the_dark_rim_of_the_real_t1() -> None:
    """The dura the real T1 shows is a rim of some five to twenty millilitres at the mask's edge,
    and where it is the real T1 is darker than in the ventricles' CSF."""
    template = load_template()
    assert 5_000 < template.dura.sum() < 20_000
    mostly = template.dura > 0.5
    assert np.median(brain_depth()[mostly]) <= 2.0
    ventricles = (template.csf > 0.95) & (brain_depth() > 12)
    assert template.t1[mostly].mean() < 0.8 * np.median(template.t1[ventricles])


def test_the_sinuses_take_their_blood_from_the_maps_csf() -> None:
    """The straight and transverse sinuses fill under a millilitre of what the maps called CSF,
    mostly more than a millimetre inside the mask, and where they are the real T1 lies between
    the ventricles' CSF and grey matter (blood, not fluid or dura)."""
    template = load_template()
    assert template.sinus.min() >= 0 and (template.sinus <= template.brain + 1e-6).all()
    assert 300 < template.sinus.sum() < 1_000
    mostly = template.sinus > 0.5
    assert np.median(brain_depth()[mostly]) > 1.0
    ventricles = (template.csf > 0.95) & (brain_depth() > 12)
    grey = template.gm > 0.95
    assert np.median(template.t1[ventricles]) < template.t1[mostly].mean()
    assert template.t1[mostly].mean() < template.t1[grey].mean()


def test_same_seed_same_subject_bit_for_bit(young_subject: Anatomy) -> None:
    again = make_subject(11, age=22, sex="F")
    assert again.fractions.tobytes() == young_subject.fractions.tobytes()
    other = make_subject(12, age=22, sex="F")
    changed = np.abs(other.fractions - young_subject.fractions).max(axis=0) > 0.5
    assert changed.sum() > 10_000  # visibly different anatomy, not a few voxels


def test_fractions_stay_valid(old_subject: Anatomy) -> None:
    fractions = old_subject.fractions
    assert fractions.shape == (len(TISSUES), *old_subject.grid.shape)
    assert fractions.dtype == np.float32
    assert fractions.min() >= -1e-5
    assert old_subject.brain.max() <= 1 + 1e-4


def test_ageing_enlarges_csf_and_adds_lesions(old_subject: Anatomy, young_subject: Anatomy) -> None:
    old_csf = old_subject.fraction("CSF").sum()
    young_csf = young_subject.fraction("CSF").sum()
    assert old_csf > 1.2 * young_csf
    assert old_subject.fraction("GM").sum() < young_subject.fraction("GM").sum()
    assert old_subject.fraction("WMH").sum() > 100  # voxels of hyperintensity
    assert young_subject.fraction("WMH").sum() < old_subject.fraction("WMH").sum() / 5


def test_lesion_load_grows_with_age() -> None:
    counts = {
        age: np.mean([len(draw_anatomy(seed, age=age).lesions) for seed in range(30)])
        for age in (25, 55, 85)
    }
    assert counts[25] < counts[55] < counts[85]


def test_enhancing_lesion_only_when_asked(old_subject: Anatomy, young_subject: Anatomy) -> None:
    assert old_subject.fraction("ENH").sum() > 50
    assert old_subject.parameters.gadolinium_mm > 0
    assert young_subject.fraction("ENH").sum() == 0
    assert young_subject.parameters.gadolinium_mm == 0


def test_sex_and_age_drawn_and_recorded() -> None:
    drawn = [draw_anatomy(seed) for seed in range(40)]
    assert {p.sex for p in drawn} == {"F", "M"}
    assert all(20 <= p.age <= 85 for p in drawn)
    women = np.mean([np.prod(p.scale) for p in drawn if p.sex == "F"])
    men = np.mean([np.prod(p.scale) for p in drawn if p.sex == "M"])
    assert women < men
    summary = drawn[0].summary()
    assert set(summary) >= {"seed", "age", "sex", "scale", "atrophy", "lesions", "jitter"}
