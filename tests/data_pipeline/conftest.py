"""One small simulated BIDS data set shared by the data-pipeline tests (about 6 s to build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tumsyn.data import ImageRecord, VolumeCache, index_bids
from tumsyn.metadata import load_protocols
from tumsyn.simulate import CohortSettings, simulate_dataset

SUBJECTS = 2
LOW_RES = (4.0, 4.0, 4.0)


@pytest.fixture(scope="session")
def bids_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data_pipeline") / "bids"
    settings = CohortSettings(subjects=SUBJECTS, seed=5)
    return simulate_dataset(
        root, settings, load_protocols("default"), voxel_size=LOW_RES, progress=False
    )


@pytest.fixture(scope="session")
def records(bids_root: Path) -> list[ImageRecord]:
    return index_bids(bids_root)


@pytest.fixture(scope="session")
def prompt_ids(records: list[ImageRecord]) -> dict[str, int]:
    return {prompt: i for i, prompt in enumerate(sorted({r.prompt for r in records}))}


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> VolumeCache:
    """A cache shared by the tests that only read volumes (written on first use)."""
    return VolumeCache(tmp_path_factory.mktemp("volume_cache"))
