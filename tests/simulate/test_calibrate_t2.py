"""benchmarks/calibrate_t2.py: the unmixing and the echo-time match it rests on (the real
template it reads is not in the repository; `make icbm-t2` fetches it)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import benchmark_module


@pytest.fixture(scope="module")
def calibrate_t2():
    with benchmark_module("calibrate_t2") as module:
        yield module


def test_unmixing_recovers_the_tissue_signals_of_a_partial_volume_image(calibrate_t2):
    rng = np.random.default_rng(0)
    fractions = rng.dirichlet([1.0, 1.0, 1.0], size=(24, 24, 24))
    maps = {name: fractions[..., k] for k, name in enumerate(("GM", "WM", "CSF"))}
    image = 1.3 * maps["GM"] + 1.0 * maps["WM"] + 2.7 * maps["CSF"]
    ratios = calibrate_t2.unmixed_ratios(image, maps)
    assert ratios["GM/WM"] == pytest.approx(1.3)
    assert ratios["CSF/WM"] == pytest.approx(2.7)


@pytest.mark.parametrize("te", [40.0, 88.0, 150.0])
def test_the_matched_echo_time_reproduces_the_csf_contrast(calibrate_t2, te):
    csf_wm = calibrate_t2.pure_tissue_ratios(calibrate_t2.t2w_protocol(te))["CSF/WM"]
    assert calibrate_t2.te_matching_csf(csf_wm) == pytest.approx(te, rel=1e-4)
