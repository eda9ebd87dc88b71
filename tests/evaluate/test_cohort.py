"""The evaluation cohorts: the library split, the off-grid protocols, and the three data sets.

The data sets are really simulated (one subject each at 4 mm, once per module); the caching tests
work on a copy so that they can change it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tumsyn.data.index import index_bids
from tumsyn.errors import MetadataError, TumsynError
from tumsyn.evaluate.cohort import (
    OFF_GRID_FACTOR,
    TASK_MODALITIES,
    CohortPlan,
    off_grid_protocols,
    protocol_key,
    simulate_cohorts,
    simulator_fingerprint,
    split_protocols,
)
from tumsyn.io import load_nifti
from tumsyn.metadata import Protocol, load_protocols
from tumsyn.metadata.bids import bids_entities
from tumsyn.simulate import check_protocols

PLAN = CohortPlan(
    train_subjects=1, internal_subjects=1, zero_shot_subjects=1, voxel_size=4.0, seed=3
)
NAMES = ("train", "internal", "zero-shot")


@pytest.fixture(scope="module")
def library() -> list[Protocol]:
    return load_protocols("library")


@pytest.fixture(scope="module")
def split(library: list[Protocol]) -> tuple[list[Protocol], list[Protocol]]:
    return split_protocols(library)


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cohorts")
    simulate_cohorts(PLAN, folder)
    return folder


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def _data_hash(path: Path) -> str:
    return hashlib.sha256(np.ascontiguousarray(load_nifti(path).data).tobytes()).hexdigest()


# --- split and off-grid protocols -------------------------------------------------------------


def test_split_partitions_the_library(library, split) -> None:
    seen, unseen = split
    seen_keys = {protocol_key(p) for p in seen}
    unseen_keys = {protocol_key(p) for p in unseen}
    assert not seen_keys & unseen_keys
    assert seen_keys | unseen_keys == {protocol_key(p) for p in library}
    assert (len(seen), len(unseen)) == (19, 6)
    assert all(p.metadata.field_strength < 7 for p in seen)
    assert all(p.metadata.manufacturer != "GE" for p in seen)
    assert any(p.metadata.field_strength >= 7 for p in unseen)
    for modality in TASK_MODALITIES:
        assert any(
            p.metadata.modality == modality and p.metadata.field_strength in (1.5, 3.0)
            for p in seen
        ), modality


def test_split_refuses_to_leave_a_task_modality_unseen(library) -> None:
    ge_only = [p for p in library if p.metadata.manufacturer == "GE"]
    with pytest.raises(MetadataError, match="no seen protocol left for T1w"):
        split_protocols(ge_only)


def test_off_grid_protocols_lie_outside_the_seen_ranges(split) -> None:
    seen, _ = split
    off_grid = off_grid_protocols(seen)
    assert sorted(p.metadata.modality for p in off_grid) == sorted(TASK_MODALITIES)
    assert all(p.name.startswith("offgrid") and p.name.isalnum() for p in off_grid)
    seen_fields = {p.metadata.field_strength for p in seen}
    for protocol in off_grid:
        metadata = protocol.metadata
        same = [p.metadata for p in seen if p.metadata.modality == metadata.modality]
        assert metadata.field_strength in seen_fields
        assert metadata.te < metadata.tr
        if metadata.ti is not None:
            assert metadata.ti < metadata.tr
        outside = [
            field
            for field in ("tr", "te", "ti")
            if getattr(metadata, field) is not None
            and getattr(metadata, field)
            >= OFF_GRID_FACTOR * max(getattr(m, field) or 0 for m in same) - 0.01
        ]
        assert outside, protocol
        assert metadata not in same
    check_protocols(off_grid)  # raises if the simulator could not render one


def test_off_grid_needs_each_required_modality(split) -> None:
    seen, _ = split
    with pytest.raises(MetadataError, match="no seen FLAIR protocol"):
        off_grid_protocols([p for p in seen if p.metadata.modality != "FLAIR"])
    without_t1ce = off_grid_protocols([p for p in seen if p.metadata.modality != "T1CE"])
    assert "T1CE" not in {p.metadata.modality for p in without_t1ce}


def test_plan_is_validated() -> None:
    with pytest.raises(ValidationError):
        CohortPlan(train_subjects=0, internal_subjects=1, zero_shot_subjects=1)
    with pytest.raises(ValidationError):
        CohortPlan(train_subjects=1, internal_subjects=1, zero_shot_subjects=1, subjects=3)
    with pytest.raises(ValidationError):
        CohortPlan(train_subjects=1, internal_subjects=1, zero_shot_subjects=1, workers=0)
    plan = CohortPlan(train_subjects=2, internal_subjects=1, zero_shot_subjects=1)
    assert (plan.voxel_size, plan.enhancing_fraction, plan.workers) == (2.0, 0.3, 1)


# --- the simulated data sets ------------------------------------------------------------------


def test_three_data_sets_with_the_right_protocols(cohorts: Path, split) -> None:
    seen, unseen = split
    expected = {
        "train": seen,
        "internal": seen,
        "zero-shot": unseen + off_grid_protocols(seen),
    }
    for name in NAMES:
        records = index_bids(cohorts / name)
        protocols = {protocol_key(p): p.metadata for p in expected[name]}
        found = {}
        for record in records:
            key = f"{record.metadata.modality}/{bids_entities(record.path.name)[0]['acq']}"
            found[key] = record.metadata
        assert sorted(found) == sorted(protocols), name
        for key, metadata in found.items():
            want = protocols[key]
            for field in ("field_strength", "manufacturer", "flip_angle"):
                assert getattr(metadata, field) == getattr(want, field), (name, key, field)
            for field in ("tr", "te", "ti"):
                value, wanted = getattr(metadata, field), getattr(want, field)
                assert value == (None if wanted is None else pytest.approx(wanted)), (key, field)
            assert metadata.voxel_size == (4.0, 4.0, 4.0)
    listed = json.loads((cohorts / "protocols.json").read_text())
    assert listed["seen"] == [protocol_key(p) for p in seen]
    assert listed["unseen"] == [protocol_key(p) for p in unseen]
    assert listed["off_grid"] == [protocol_key(p) for p in off_grid_protocols(seen)]


def test_no_image_is_shared_between_data_sets(cohorts: Path) -> None:
    hashes = {}
    for name in NAMES:
        images = sorted((cohorts / name).glob("sub-*/anat/*.nii.gz"))
        assert images, name
        for path in images:
            data = load_nifti(path).data
            assert np.isfinite(data).all() and data.max() > data.min(), path
            hashes.setdefault(_data_hash(path), []).append(f"{name}/{path.name}")
        probseg = sorted((cohorts / name / "derivatives").rglob("*label-WM_probseg.nii.gz"))
        hashes.setdefault(_data_hash(probseg[0]), []).append(f"{name}/{probseg[0].name}")
    shared = {h: where for h, where in hashes.items() if len(where) > 1}
    assert not shared


def test_a_second_call_reuses_everything(cohorts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(cohorts, folder)
    before = {name: _files(folder / name) for name in NAMES}
    paths = simulate_cohorts(PLAN, folder)
    assert paths == {name: folder / name for name in NAMES}
    assert {name: _files(folder / name) for name in NAMES} == before
    # workers do not change the data: still nothing to do
    simulate_cohorts(PLAN.model_copy(update={"workers": 2}), folder)
    assert {name: _files(folder / name) for name in NAMES} == before


def test_a_changed_plan_or_a_partial_folder_is_simulated_again(
    cohorts: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(cohorts, folder)
    before = {name: _files(folder / name) for name in NAMES}
    (folder / "internal" / "participants.tsv").unlink()  # as if killed mid-way
    changed = PLAN.model_copy(update={"zero_shot_subjects": 2})
    simulate_cohorts(changed, folder)
    assert _files(folder / "train") == before["train"]
    for name in ("internal", "zero-shot"):
        after = _files(folder / name)
        assert all(after[p] > before[name].get(p, -1) for p in after), name
    assert len(list((folder / "zero-shot").glob("sub-*"))) == 2
    assert (folder / "internal" / "participants.tsv").is_file()
    stamp = json.loads((folder / "zero-shot" / "cohort.json").read_text())
    assert stamp["plan"]["zero_shot_subjects"] == 2
    assert stamp["subjects"] == 2
    # the first subject is the same subject as before: only the count changed
    image = "sub-001/anat/sub-001_acq-offgridtse_FLAIR.nii.gz"
    assert _data_hash(folder / "zero-shot" / image) == _data_hash(cohorts / "zero-shot" / image)


def test_a_cohort_of_another_simulator_is_simulated_again(cohorts: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(cohorts, folder)
    before = {name: _files(folder / name) for name in NAMES}
    stamp_file = folder / "train" / "cohort.json"
    stamp = json.loads(stamp_file.read_text())
    assert stamp["simulator"] == simulator_fingerprint()
    stamp_file.write_text(json.dumps({**stamp, "simulator": "recalibrated"}))
    simulate_cohorts(PLAN, folder)
    after = _files(folder / "train")
    assert all(after[p] > before["train"][p] for p in after)
    assert _files(folder / "internal") == before["internal"]


def test_a_foreign_folder_is_not_removed(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "notes.txt").write_text("mine")
    with pytest.raises(TumsynError, match="notes.txt"):
        simulate_cohorts(PLAN, tmp_path)
    assert (tmp_path / "train" / "notes.txt").read_text() == "mine"
