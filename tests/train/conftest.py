"""What the training tests share: a small simulated cohort, tiny models, and their run configs.

The cohort and the stage-1 text encoder take most of the time of these tests, so they are made
once per session and every test writes its own configuration around them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers import TINY_BMLIP_SPEC, TINY_SYNTH_SPEC
from tumsyn.cli import main
from tumsyn.metadata import load_protocols
from tumsyn.simulate import CohortSettings, simulate_dataset

BMLIP_SPEC = TINY_BMLIP_SPEC
STEPS = 6

ConfigWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def steps() -> int:
    """How many steps a run of these tests makes unless its config says otherwise."""
    return STEPS


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three simulated subjects with T1w, T2w and FLAIR at 6 mm: enough for both stages."""
    root = tmp_path_factory.mktemp("cohort")
    protocols = [
        p for p in load_protocols("default") if p.metadata.modality in ("T1w", "T2w", "FLAIR")
    ]
    return simulate_dataset(
        root / "sim", CohortSettings(subjects=3, seed=2), protocols, voxel_size=(6, 6, 6),
        progress=False,
    )  # fmt: skip


def _write(path: Path, content: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def _common(cohort: Path, out: Path) -> dict[str, Any]:
    """Settings of both stages; the cache sits beside the run, so runs of one test share it."""
    return {
        "data": {"source": str(cohort), "cache": str(out.parent / "cache"),
                 "validation_fraction": 0.34},
        "steps": STEPS, "batch_size": 2, "validate_every": 3, "checkpoint_every": 3,
        "seed": 0, "out": str(out),
    }  # fmt: skip


@pytest.fixture(scope="session")
def text_config(cohort: Path) -> ConfigWriter:
    """``write(folder, name, **settings)``: a stage-1 config ``folder/name.yaml``, run ``name``."""

    def write(folder: Path, name: str, **settings: Any) -> Path:
        content = {"model": BMLIP_SPEC, "spacing": 12.0, **_common(cohort, folder / name)}
        return _write(folder / f"{name}.yaml", {**content, **settings})

    return write


@pytest.fixture(scope="session")
def text_encoder(text_config: ConfigWriter, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stage-1 checkpoint trained for :data:`STEPS` steps (the text tower of stage 2)."""
    folder = tmp_path_factory.mktemp("stage1")
    assert main(["train-text", str(text_config(folder, "run")), "--quiet"]) == 0
    return folder / "run" / "model.safetensors"


@pytest.fixture(scope="session")
def synth_config(cohort: Path, text_encoder: Path) -> ConfigWriter:
    """``write(folder, name, **settings)``: a stage-2 config ``folder/name.yaml``, run ``name``."""

    def write(folder: Path, name: str, **settings: Any) -> Path:
        content = {
            "model": TINY_SYNTH_SPEC, "text_encoder": str(text_encoder), "patch_size": 8,
            "queries": 64, "validation_patches": 2, **_common(cohort, folder / name),
        }  # fmt: skip
        return _write(folder / f"{name}.yaml", {**content, **settings})

    return write
