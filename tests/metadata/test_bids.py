"""BIDS sidecars, names and participants.tsv -> ImagingMetadata (seconds become ms)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from helpers import ISSUE_FLAIR
from tumsyn.errors import InputFileError, MetadataError, MetadataWarning
from tumsyn.metadata import (
    ImagingMetadata,
    find_participant,
    metadata_from_sidecar,
    modality_from_bids_name,
    modality_from_file_name,
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


@pytest.mark.parametrize(
    ("name", "modality"),
    [
        ("sub-01_ce-gadolinium_T1w.nii.gz", "T1CE"),  # a BIDS name is read as BIDS
        ("IXI002-Guys-0828-T2.nii.gz", "T2w"),  # IXI's names
        ("IXI002-Guys-0828-PD.nii.gz", "PD"),
        ("sub-01_T1w_brain.nii.gz", "T1w"),  # a derivative's extra word
        ("patient 7 flair.nii", "FLAIR"),
        ("IXI002-Guys-0828-MRA.nii.gz", None),
        ("brain.nii.gz", None),
    ],
)
def test_modality_from_file_name(name: str, modality: str | None) -> None:
    assert modality_from_file_name(name) == modality
    assert modality_from_bids_name("IXI002-Guys-0828-T2.nii.gz") is None  # BIDS stays strict


def test_sidecar_seconds_become_milliseconds(tmp_path: Path) -> None:
    participants = "participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t31\tM\n"
    path = make_bids(tmp_path, "sub-01_FLAIR.json", FLAIR_SIDECAR, participants)
    participant = find_participant(path)
    metadata = metadata_from_sidecar(path, participant=participant, voxel_size=(1, 1, 3))
    assert metadata == ISSUE_FLAIR


def test_binary_noise_from_unit_conversion_is_removed() -> None:
    metadata = metadata_from_sidecar({"RepetitionTime": 2.3, "EchoTime": 0.00298})
    assert metadata.te == 2.98 and metadata.tr == 2300.0


def test_sidecar_in_milliseconds_is_read_as_milliseconds() -> None:
    message = "RepetitionTime 2300 looks like milliseconds (BIDS sidecars give seconds)"
    with pytest.warns(MetadataWarning, match=re.escape(f"sidecar: {message}; read as 2300 ms")):
        metadata = metadata_from_sidecar({"RepetitionTime": 2300})
    assert metadata.tr == 2300


def test_multi_echo_leaves_the_echo_time_out() -> None:
    with pytest.warns(MetadataWarning, match="holds 3 values; left out"):
        metadata = metadata_from_sidecar({"EchoTime": [0.005, 0.01, 0.015], "FlipAngle": 9})
    assert metadata == ImagingMetadata(flip_angle=9)


def test_sidecar_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "sub-01_T1w.json"
    broken.write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        metadata_from_sidecar(broken)
    with pytest.raises(InputFileError):
        metadata_from_sidecar(tmp_path / "missing.json")
    broken.write_text("[1, 2]")
    with pytest.raises(MetadataError, match="a BIDS sidecar must hold a JSON object"):
        metadata_from_sidecar(broken)
    broken.write_bytes(b"\xff\xfe{")
    with pytest.raises(MetadataError, match="not valid JSON"):
        metadata_from_sidecar(broken)


def test_inconsistent_sidecar_times_are_left_out(tmp_path: Path) -> None:
    inconsistent = tmp_path / "sub-02_T1w.json"
    inconsistent.write_text(json.dumps({"RepetitionTime": 0.002, "EchoTime": 0.003}))
    message = (
        "sub-02_T1w.json: RepetitionTime and EchoTime do not fit together "
        "(TE 3 ms must be shorter than TR 2 ms); left out"
    )
    with pytest.warns(MetadataWarning, match=re.escape(message)):
        metadata = metadata_from_sidecar(inconsistent)
    assert metadata == ImagingMetadata(modality="T1w")


def test_explicit_voxel_size_is_still_checked() -> None:
    with pytest.raises(MetadataError, match="sidecar: voxel_size 12.0 mm is out of range"):
        metadata_from_sidecar({}, voxel_size=(1, 1, 12))


# Sidecar values as real data sets hold them: (sidecar, field, reading, warning).
BAD_SIDECARS = [
    (
        {"RepetitionTime": "2.3"},
        "tr",
        2300,
        "RepetitionTime '2.3' is text, not a number; read as 2300 ms",
    ),
    (
        {"RepetitionTime": "2300 ms"},
        "tr",
        2300,
        "RepetitionTime '2300 ms' is not a plain number; read as 2300 ms",
    ),
    (
        {"RepetitionTime": "2300"},
        "tr",
        2300,
        "RepetitionTime '2300' is text, not a number and looks like milliseconds",
    ),
    ({"RepetitionTime": "abc"}, "tr", None, "RepetitionTime 'abc' is not a number; left out"),
    (
        {"RepetitionTime": 10**400},
        "tr",
        None,
        "RepetitionTime 1" + "0" * 56 + "... is too large a number; left out",
    ),
    (
        {"RepetitionTime": float("inf")},
        "tr",
        None,
        "RepetitionTime inf is not a finite number; left out",
    ),
    ({"EchoTime": [0.005]}, "te", 5, "EchoTime [0.005] is a list; read as 5 ms"),
    ({"EchoTime": []}, "te", None, "EchoTime [] holds 0 values; left out"),
    ({"InversionTime": True}, "ti", None, "InversionTime True is not a number; left out"),
    ({"InversionTime": {"s": 1}}, "ti", None, "InversionTime {'s': 1} is not a number; left out"),
    ({"FlipAngle": "90°"}, "flip_angle", 90, "FlipAngle '90°' is not a plain number; read as 90"),
    ({"FlipAngle": -5}, "flip_angle", None, "FlipAngle -5.0 is not usable (flip_angle -5.0"),
    (
        {"MagneticFieldStrength": "3T"},
        "field_strength",
        3,
        "MagneticFieldStrength '3T' is not a plain number; read as 3 T",
    ),
    (
        {"MagneticFieldStrength": 15000},
        "field_strength",
        1.5,
        "MagneticFieldStrength 15000 looks like gauss; read as 1.5 T",
    ),
    (
        {"MagneticFieldStrength": 40},
        "field_strength",
        None,
        "MagneticFieldStrength 40.0 is not usable (field_strength 40.0 T is out of range",
    ),
    ({"Manufacturer": 7}, "manufacturer", None, "Manufacturer 7 is not text; left out"),
    (
        {"Manufacturer": "None"},
        "manufacturer",
        None,
        "Manufacturer 'None' is not a vendor name; left out",
    ),
]


@pytest.mark.parametrize(
    ("sidecar", "field", "reading", "message"),
    BAD_SIDECARS,
    ids=[message.split(";")[0][:50] for *_, message in BAD_SIDECARS],
)
def test_non_standard_sidecar_values_are_read_or_left_out_with_a_warning(
    tmp_path: Path, sidecar: dict, field: str, reading, message: str
) -> None:
    path = tmp_path / "sub-01_T1w.json"
    path.write_text(json.dumps(sidecar))
    with pytest.warns(MetadataWarning, match=re.escape(f"sub-01_T1w.json: {message}")):
        metadata = metadata_from_sidecar(path)
    assert getattr(metadata, field) == reading
    assert metadata.modality == "T1w"


def test_participants_not_available_and_other_sex(tmp_path: Path) -> None:
    participants = tmp_path / "participants.tsv"
    participants.write_text("participant_id\tage\tsex\nsub-01\tn/a\tO\nsub-02\t8.5\tmale\n")
    rows = read_participants(participants)
    assert metadata_from_sidecar({}, participant=rows["sub-01"]) == ImagingMetadata()
    assert metadata_from_sidecar({}, participant=rows["sub-02"]) == ImagingMetadata(
        age=8.5, sex="M"
    )


def test_participants_capped_age(tmp_path: Path) -> None:
    capped = tmp_path / "participants.tsv"
    capped.write_text("participant_id\tage\nsub-01\t89+\n")
    message = "participants.tsv: sub-01 age '89+' is not a plain number; read as 89 years"
    with pytest.warns(MetadataWarning, match=re.escape(message)):
        metadata = metadata_from_sidecar({}, participant=read_participants(capped)["sub-01"])
    assert metadata == ImagingMetadata(age=89)


# participants.tsv cells as real data sets hold them: (age, sex, field, reading, warning).
BAD_PARTICIPANTS = [
    ("45Y", "F", "age", 45, "sub-01 age '45Y' is not a plain number; read as 45 years"),
    ("90+", "F", "age", 90, "sub-01 age '90+' is not a plain number; read as 90 years"),
    ("6 months", "F", "age", 0.5, "sub-01 age '6 months' is not a plain number; read as 0.5"),
    ("old", "F", "age", None, "sub-01 age 'old' is not a number; left out"),
    ("45 parsecs", "F", "age", None, "sub-01 age '45 parsecs' has an unknown unit 'parsecs'"),
    ("130", "F", "age", None, "sub-01 age 130.0 is not usable (age 130.0 years is out of range"),
    ("45", "x", "sex", None, "sub-01 sex 'x' is not F, M or O; left out"),
]


@pytest.mark.parametrize(
    ("age", "sex", "field", "reading", "message"),
    BAD_PARTICIPANTS,
    ids=[message.split(";")[0] for *_, message in BAD_PARTICIPANTS],
)
def test_non_standard_participants_are_read_or_left_out_with_a_warning(
    tmp_path: Path, age: str, sex: str, field: str, reading, message: str
) -> None:
    participants = tmp_path / "participants.tsv"
    participants.write_text(f"participant_id\tage\tsex\nsub-01\t{age}\t{sex}\n")
    row = read_participants(participants)["sub-01"]
    with pytest.warns(MetadataWarning, match=re.escape(f"participants.tsv: {message}")):
        metadata = metadata_from_sidecar({}, participant=row)
    assert getattr(metadata, field) == reading


def test_participants_with_byte_order_mark_and_spaces(tmp_path: Path) -> None:
    participants = tmp_path / "participants.tsv"
    text = "participant_id \t age\tsex\nsub-01\t70\tF\nsub-02\n\t\t\n"
    participants.write_text(text, encoding="utf-8-sig")
    rows = read_participants(participants)
    assert list(rows) == ["sub-01", "sub-02"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # n/a, missing cells and O need no warning
        assert metadata_from_sidecar({}, participant=rows["sub-01"]) == ImagingMetadata(
            age=70, sex="F"
        )
        assert metadata_from_sidecar({}, participant=rows["sub-02"]) == ImagingMetadata()


def test_participants_errors(tmp_path: Path) -> None:
    not_text = tmp_path / "binary.tsv"
    not_text.write_bytes(b"participant_id\n\xff\xfe\n")
    with pytest.raises(MetadataError, match="not a UTF-8 text file"):
        read_participants(not_text)
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
