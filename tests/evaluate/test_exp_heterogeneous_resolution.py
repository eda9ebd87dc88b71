"""Smoke test of benchmarks/exp_heterogeneous_resolution.py at its smallest size.

It checks what the experiment writes and the properties of the degradation and the baselines
(the parts that hold whatever the model), never the bundled model's quality: how well it
super-resolves or changes contrast is the experiment's finding, not a property to assert.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from helpers import benchmark_module, run_benchmark
from tumsyn.io import Grid

METHODS = ["tumsyn FLAIR->T1w", "tumsyn FLAIR->FLAIR", "trilinear", "B-spline"]


@pytest.fixture(scope="module")
def experiment() -> Iterator[ModuleType]:
    with benchmark_module("exp_heterogeneous_resolution") as module:
        yield module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run (1 subject, 1 draw, sagittal, an 11-slice slab); its JSON folder."""
    folder = tmp_path_factory.mktemp("results")
    arguments = ["--draws", "1", "--orientations", "sagittal", "--slices", "11"]
    run_benchmark("exp_heterogeneous_resolution", arguments, folder)
    return folder


def _content(folder: Path, name: str) -> list[dict]:
    content = json.loads((folder / f"{name}.json").read_text())
    assert content["benchmark"] == name
    return content["rows"]


def test_rows_hold_finite_metrics_for_each_method(results: Path) -> None:
    rows = _content(results, "heterogeneous_resolution_cases")
    assert [row["method"] for row in rows] == METHODS
    assert [row["truth"] for row in rows] == ["T1w", "FLAIR", "FLAIR", "FLAIR"]
    for row in rows:
        assert row["orientation"] == "sagittal"
        assert 1.0 <= row["factor"] <= 3.0 and 1.0 <= row["fwhm (vox)"] <= 3.0
        assert math.isfinite(row["psnr"]) and row["psnr"] > 0
        assert math.isfinite(row["ssim"]) and -1.0 <= row["ssim"] <= 1.0
        # Sagittal: only x (array axis 0) is thick, by the drawn factor.
        voxel = row["input voxel (mm)"]
        assert voxel[1:] == [2.0, 2.0]
        assert voxel[0] == pytest.approx(2.0 * row["factor"], abs=2e-3)


def test_summary_names_every_method(results: Path) -> None:
    summary = _content(results, "heterogeneous_resolution")
    assert [line["method"] for line in summary] == METHODS
    for line in summary:
        assert line["n"] == 1
        # One value: nothing to resample, so no interval.
        assert line["psnr_low"] is None and line["psnr_high"] is None


@pytest.mark.parametrize("orientation", ["axial", "coronal", "sagittal"])
def test_only_the_thick_axis_is_downsampled(experiment: ModuleType, orientation: str) -> None:
    fine = Grid((30, 24, 18), np.diag([2.0, 2.0, 2.0, 1.0]))
    grid = experiment.thick_grid(fine, orientation, 3.0)
    axis = {"sagittal": 0, "coronal": 1, "axial": 2}[orientation]
    expected = [2.0, 2.0, 2.0]
    expected[axis] = 6.0
    assert np.allclose(grid.voxel_size, expected)
    shape = list(fine.shape)
    shape[axis] //= 3
    assert list(grid.shape) == shape


def test_trilinear_without_degradation_reproduces_the_truth(experiment: ModuleType) -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((16, 16, 16), dtype=np.float32)
    truth[2:14, 2:14, 2:14] = rng.uniform(1.0, 2.0, (12, 12, 12))
    fine = Grid(truth.shape, np.diag([2.0, 2.0, 2.0, 1.0]))
    for orientation in experiment.ORIENTATIONS:
        degradation = experiment.Degradation(orientation, factor=1.0, fwhm=0.0)
        thick, grid = experiment.degrade(truth, fine, degradation)
        upsampled = experiment.interpolate(thick, grid, fine, 1)
        np.testing.assert_allclose(upsampled, truth, atol=1e-6)
        assert experiment.scores(truth, upsampled)["psnr"] > 100  # infinite when exact


def test_draws_are_seeded(experiment: ModuleType) -> None:
    def draw(seed: int) -> list:
        return experiment.draw_degradations(np.random.default_rng(seed), ["axial", "coronal"], 3)

    assert draw(1) == draw(1) and draw(1) != draw(2)
    assert [d.orientation for d in draw(1)] == ["axial"] * 3 + ["coronal"] * 3
