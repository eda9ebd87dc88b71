from __future__ import annotations

import numpy as np
import pytest

from tumsyn.errors import MetadataError
from tumsyn.simulate.tissues import (
    FIELD_RANGE,
    TISSUES,
    contrast_enhanced,
    draw_jitter,
    tissue_properties,
)

GM, WM, CSF, WMH, ENH = (TISSUES.index(t) for t in ("GM", "WM", "CSF", "WMH", "ENH"))


def test_textbook_ordering_at_every_field() -> None:
    for field in (1.5, 2.0, 3.0, 5.0, 7.0):
        p = tissue_properties(field)
        assert p.t1[WM] < p.t1[GM] < p.t1[CSF]
        assert p.t2[WM] < p.t2[GM] < p.t2[CSF]
        assert p.t2star[WM] < p.t2star[GM]
        assert p.pd[WM] < p.pd[GM] < p.pd[CSF]
        assert p.t1[WMH] > p.t1[WM] and p.t2[WMH] > p.t2[WM]
        assert p.chi[WM] < p.chi[CSF] < p.chi[GM]  # myelin diamagnetic, cortex paramagnetic


def test_t1_lengthens_and_t2star_shortens_with_field() -> None:
    low, high = tissue_properties(1.5), tissue_properties(7.0)
    assert np.all(high.t1[:2] > low.t1[:2])
    assert np.all(high.t2star[:2] < low.t2star[:2])


def test_interpolation_stays_between_tabulated_values() -> None:
    p15, p2, p3 = (tissue_properties(b) for b in (1.5, 2.0, 3.0))
    assert np.all((p2.t1 >= np.minimum(p15.t1, p3.t1)) & (p2.t1 <= np.maximum(p15.t1, p3.t1)))


@pytest.mark.parametrize("field", [None, 0.5, 9.4])
def test_field_outside_the_table_is_refused(field) -> None:
    with pytest.raises(MetadataError, match="field strength"):
        tissue_properties(field)
    assert FIELD_RANGE == (1.5, 7.0)


def test_jitter_multiplies_and_is_reproducible() -> None:
    first, second = draw_jitter(np.random.default_rng(3)), draw_jitter(np.random.default_rng(3))
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    plain = tissue_properties(3.0)
    jittered = tissue_properties(3.0, jitter=first)
    np.testing.assert_allclose(jittered.t1, plain.t1 * first["t1"])
    np.testing.assert_allclose(jittered.pd, plain.pd * first["pd"])


def test_gadolinium_shortens_relaxation_only_where_it_is() -> None:
    before = tissue_properties(3.0, gadolinium_mm=0.5)
    after = contrast_enhanced(before)
    assert after.t1[ENH] < before.t1[ENH] / 2  # r1 3.7/mM/s x 0.5 mM vs R1 ~ 0.5/s
    expected = 1.0 / (1.0 / before.t1[ENH] + 3.7e-3 * 0.5)
    assert after.t1[ENH] == pytest.approx(expected)
    # The agent circulates in venous blood and reaches the dura; tissue without it keeps its
    # relaxation.
    reached = [TISSUES.index(t) for t in ("VEIN", "DURA", "SINUS")]
    assert (after.t1[reached] < before.t1[reached] / 2).all()
    others = [i for i in range(len(TISSUES)) if i not in (ENH, *reached)]
    np.testing.assert_array_equal(after.t1[others], before.t1[others])
