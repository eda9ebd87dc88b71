"""ImagingMetadata: canonical spellings, validation with clear messages, immutability."""

from __future__ import annotations

import dataclasses

import pytest

from tumsyn.errors import MetadataError
from tumsyn.metadata import MODALITIES, ImagingMetadata, canonical_modality


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("PDw", "PD"),
        ("T2starw", "T2star"),
        ("T2*", "T2star"),
        ("ce-gadolinium T1w", "T1CE"),
        ("flair", "FLAIR"),
        ("T2-FLAIR", "FLAIR"),
        ("t1", "T1w"),
        ("SWI", "SWI"),
        ("proton density", "PD"),
    ],
)
def test_modality_aliases(alias: str, canonical: str) -> None:
    assert canonical_modality(alias) == canonical


def test_canonical_names_map_to_themselves() -> None:
    assert [canonical_modality(m) for m in MODALITIES] == list(MODALITIES)


def test_unknown_modality_lists_the_valid_ones() -> None:
    with pytest.raises(MetadataError) as error:
        ImagingMetadata(modality="DWI")
    assert "unknown modality 'DWI'" in str(error.value)
    assert all(m in str(error.value) for m in MODALITIES)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("SIEMENS", "Siemens"),
        ("Siemens Healthineers", "Siemens"),
        ("Philips Medical Systems", "Philips"),
        ("GE MEDICAL SYSTEMS", "GE"),
        ("TOSHIBA_MEC", "Toshiba"),
        ("United Imaging Healthcare", "UIH"),
        ("Bruker   BioSpin", "Bruker BioSpin"),
    ],
)
def test_manufacturer_spellings(given: str, expected: str) -> None:
    assert ImagingMetadata(manufacturer=given).manufacturer == expected


def test_numbers_become_floats_and_sex_is_canonical() -> None:
    metadata = ImagingMetadata(age=34, sex="female", tr=2300, flip_angle="9")
    assert metadata.age == 34.0 and isinstance(metadata.age, float)
    assert metadata.sex == "F"
    assert metadata.flip_angle == 9.0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tr": 40000}, "tr 40000.0 ms is out of range .* give times in milliseconds"),
        ({"tr": 0}, "tr 0.0 ms is out of range"),
        ({"tr": -5}, "out of range"),
        ({"tr": 2000, "te": 2000}, "TE 2000 ms must be shorter than TR 2000 ms"),
        ({"ti": float("nan")}, "ti nan ms is out of range"),
        ({"age": 121}, "age 121.0 years is out of range"),
        ({"age": -1}, "out of range"),
        ({"voxel_size": (1, 1, 11)}, "voxel_size 11.0 mm is out of range"),
        ({"voxel_size": (1, 1)}, "three numbers"),
        ({"voxel_size": (1, 0, 1)}, "out of range"),
        ({"field_strength": 30}, "field_strength 30.0 T is out of range"),
        ({"flip_angle": 0}, "out of range"),
        ({"flip_angle": "T2 var"}, "single word"),
        ({"flip_angle": "None"}, "single word"),
        ({"tr": "fast"}, "tr must be a number"),
        ({"tr": True}, "tr must be a number"),
        ({"sex": "X"}, "sex 'X' is not understood"),
        ({"manufacturer": "Acme; Inc"}, "not usable in a prompt"),
        ({"manufacturer": ""}, "not usable in a prompt"),
    ],
)
def test_invalid_values_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(MetadataError, match=message):
        ImagingMetadata(**fields)


def test_record_is_immutable_and_replace_layers_sources() -> None:
    base = ImagingMetadata(modality="T2w", tr=3200, te=563)
    with pytest.raises(dataclasses.FrozenInstanceError):
        base.tr = 1.0  # type: ignore[misc]
    layered = base.replace(te=100, age=None, sex="M")
    assert (layered.te, layered.tr, layered.sex, layered.age) == (100.0, 3200.0, "M", None)
    assert base.te == 563.0


def test_replace_validates_the_result() -> None:
    with pytest.raises(MetadataError, match="shorter than TR"):
        ImagingMetadata(tr=500).replace(te=600)
