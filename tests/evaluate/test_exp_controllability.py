"""Smoke test of benchmarks/exp_controllability.py at its smallest size.

It checks the shape of what the experiment writes and the simulator's physics (the truth the model
is compared with), never the bundled model's quality: how well the model follows the prompt is
the experiment's finding, not a property to assert.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from helpers import benchmark_module, run_benchmark


@pytest.fixture(scope="module")
def experiment() -> Iterator[ModuleType]:
    with benchmark_module("exp_controllability") as module:
        yield module


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny run (1 subject, 4 mm, 6 slices, 2 values of two sweeps); its JSON folder."""
    folder = tmp_path_factory.mktemp("results")
    arguments = ["--points", "2", "--slices", "6", "--voxel-size", "4",
                 "--sweeps", "t2w-te", "flair-ti"]  # fmt: skip
    run_benchmark("exp_controllability", arguments, folder)
    return folder


def _rows(folder: Path, name: str) -> list[dict]:
    content = json.loads((folder / f"{name}.json").read_text())
    assert content["benchmark"] == name
    return content["rows"]


def _simulated(rows: list[dict], sweep: str, ratio: str) -> list[float]:
    return [row[f"sim {ratio}"] for row in rows if row["sweep"] == sweep]


def test_rows_hold_finite_ratios_for_each_value(results: Path) -> None:
    rows = _rows(results, "controllability_bundled")
    assert [(row["sweep"], row["value (ms)"]) for row in rows] == [
        ("T2w TE", 60.0), ("T2w TE", 700.0), ("FLAIR TI", 1500.0), ("FLAIR TI", 3000.0),
    ]  # fmt: skip
    for row in rows:
        assert row["range"] in ("trained", "extrapolation")
        for ratio in ("CSF/WM", "GM/WM"):
            assert math.isfinite(row[f"sim {ratio}"]) and row[f"sim {ratio}"] > 0
            # The synthesizer clips its output at 0, so a ratio of it cannot be negative.
            assert math.isfinite(row[f"synth {ratio}"]) and row[f"synth {ratio}"] >= 0
    # Both ends of each sweep lie beyond the checkpoint's trained ranges (95..563, 1750..2500).
    assert {row["range"] for row in rows} == {"extrapolation"}


def test_correlation_rows_name_every_sweep_and_ratio(results: Path) -> None:
    rows = _rows(results, "controllability_bundled_correlation")
    assert [(row["sweep"], row["ratio"]) for row in rows] == [
        ("T2w TE", "CSF/WM"), ("T2w TE", "GM/WM"), ("FLAIR TI", "CSF/WM"), ("FLAIR TI", "GM/WM"),
    ]  # fmt: skip
    for row in rows:
        assert row["n"] == 2 and row["n trained"] == 0
        # Two values define no correlation: recorded as null, never as NaN.
        assert row["pearson"] is None and row["spearman"] is None


def test_simulated_contrast_follows_the_physics(results: Path) -> None:
    rows = _rows(results, "controllability_bundled")
    short_te, long_te = _simulated(rows, "T2w TE", "CSF/WM")
    assert long_te > 2 * short_te  # CSF's long T2: T2w CSF/WM rises with TE
    early, late = _simulated(rows, "FLAIR TI", "CSF/WM")
    assert late > 1.5 * early  # CSF recovers from inversion long after WM: its signal moves with TI


def test_correlation_of_a_proportional_series_is_one(experiment: ModuleType) -> None:
    result = experiment.correlation([1.0, 2.0, 4.0], [2.0, 4.0, 8.0])
    assert result["pearson"] == pytest.approx(1.0)
    assert result["spearman"] == pytest.approx(1.0)
    assert experiment.correlation([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == {
        "pearson": None,
        "spearman": None,
    }


def test_figure_is_written(experiment: ModuleType, results: Path, tmp_path: Path) -> None:
    rows = _rows(results, "controllability_bundled")
    sweeps = tuple(s for s in experiment.SWEEPS if s.key in ("t2w-te", "flair-ti"))
    coverage = {"timings": {"T2w": {"te": [95.0, 563.0]}, "FLAIR": {"ti": [1750.0, 2500.0]}}}
    path = tmp_path / "controllability.png"
    experiment.save_figure(path, rows, sweeps, coverage)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
