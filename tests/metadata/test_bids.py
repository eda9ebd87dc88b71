"""BIDS sidecars, names and participants.tsv -> ImagingMetadata (seconds become ms)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import ISSUE_FLAIR
from tumsyn.errors import InputFileError, MetadataError
from tumsyn.metadata import (
    ImagingMetadata,
    find_participant,
    metadata_from_sidecar,
    modality_from_bids_name,
    read_participants,
    sidecar_path,
)

FLAIR_SIDECAR = {
    "RepetitionTime": 9.0,
    "EchoTime": 0.081,
    "InversionTime": 2.5,
    "FlipAngle": 150,
    "MagneticFieldStrength": 3,
    "Manufacturer": "SIEMENS",
}


def make_bids(root: Path, name: str, sidecar: dict, participants: str | None) -> Path:
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    path = anat / name
    path.write_text(json.dumps(sidecar))
    if participants is not None:
        (root / "participants.tsv").write_text(participants)
    return path


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("sub-01_T1w.nii.gz", "T1w"),
        ("sub-01_ses-1_acq-fast_T2w.nii", "T2w"),
        ("sub-01_FLAIR.json", "FLAIR"),
        ("sub-01_PDw.nii.gz", "PD"),
        ("sub-01_T2starw.nii.gz", "T2star"),
        ("sub-01_ce-gadolinium_T1w.nii.gz", "T1CE"),
        ("sub-01_task-rest_bold.nii.gz", None),
    ],
)
def test_modality_from_bids_name(name: str, modality: str | None) -> None:
    assert modality_from_bids_name(name) == modality


def test_sidecar_seconds_become_milliseconds(tmp_path: Path) -> None:
    participants = "participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t31\tM\n"
    path = make_bids(tmp_path, "sub-01_FLAIR.json", FLAIR_SIDECAR, participants)
    participant = find_participant(path)
    metadata = metadata_from_sidecar(path, participant=participant, voxel_size=(1, 1, 3))
    assert metadata == ISSUE_FLAIR


def test_binary_noise_from_unit_conversion_is_removed() -> None:
    metadata = metadata_from_sidecar({"RepetitionTime": 2.3, "EchoTime": 0.00298})
    assert metadata.te == 2.98 and metadata.tr == 2300.0


def test_sidecar_in_milliseconds_is_caught() -> None:
    with pytest.raises(MetadataError, match="looks like milliseconds"):
        metadata_from_sidecar({"RepetitionTime": 2300})


def test_multi_echo_needs_an_explicit_echo_time() -> None:
    with pytest.raises(MetadataError, match="holds 3 values"):
        metadata_from_sidecar({"EchoTime": [0.005, 0.01, 0.015]})


def test_sidecar_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "sub-01_T1w.json"
    broken.write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        metadata_from_sidecar(broken)
    with pytest.raises(InputFileError):
        metadata_from_sidecar(tmp_path / "missing.json")
    inconsistent = tmp_path / "sub-02_T1w.json"
    inconsistent.write_text(json.dumps({"RepetitionTime": 0.002, "EchoTime": 0.003}))
    with pytest.raises(MetadataError, match="sub-02_T1w.json: TE 3 ms must be shorter"):
        metadata_from_sidecar(inconsistent)


def test_participants_not_available_and_other_sex(tmp_path: Path) -> None:
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\tsex\nsub-01\tn/a\tO\nsub-02\t8.5\tmale\n")
    rows = read_participants(participants)
    assert metadata_from_sidecar({}, participant=rows["sub-01"]) == ImagingMetadata()
    assert metadata_from_sidecar({}, participant=rows["sub-02"]) == ImagingMetadata(
        age=8.5, sex="M"
    )


def test_participants_errors(tmp_path: Path) -> None:
    bad_age = tmp_path / "participants.tsv"
    bad_age.write_text("participant_id\tage\nsub-01\t89+\n")
    with pytest.raises(MetadataError, match="age '89\\+' of sub-01 is not a number"):
        metadata_from_sidecar({}, participant=read_participants(bad_age)["sub-01"])
    no_id = tmp_path / "other.tsv"
    no_id.write_text("subject\tage\n01\t3\n")
    with pytest.raises(MetadataError, match="participant_id"):
        read_participants(no_id)


def test_find_participant_with_sessions_and_without_file(tmp_path: Path) -> None:
    anat = tmp_path / "sub-07" / "ses-2" / "anat"
    anat.mkdir(parents=True)
    image = anat / "sub-07_ses-2_T2w.nii.gz"
    assert find_participant(image) is None
    (tmp_path / "participants.tsv").write_text("participant_id\tage\nsub-07\t44\n")
    assert find_participant(image)["age"] == "44"
    assert find_participant(tmp_path / "no_subject_T1w.nii.gz") is None


def test_sidecar_path_beside_image() -> None:
    assert sidecar_path("/d/sub-01_T1w.nii.gz") == Path("/d/sub-01_T1w.json")
    assert sidecar_path("/d/sub-01_T1w.nii") == Path("/d/sub-01_T1w.json")
