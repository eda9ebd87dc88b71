"""DICOM headers -> ImagingMetadata, on DICOM files the tests write with pydicom and on the
DICOM test files that ship inside the nibabel and pydicom wheels."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import nibabel
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from helpers import ISSUE_FLAIR
from tumsyn.errors import ImageError, InputFileError, MetadataError, MetadataWarning, TumsynError
from tumsyn.metadata import ImagingMetadata, metadata_from_dicom
from tumsyn.metadata.dicom import parse_dicom_age

NIBABEL_DATA = Path(nibabel.__file__).parent / "nicom" / "tests" / "data"
# Only the files inside the wheel: pydicom.data.get_testdata_files() would download others.
PYDICOM_DATA = Path(pydicom.__file__).parent / "data"


def _dataset(transfer_syntax: str) -> pydicom.Dataset:
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MR"
    return dataset


def write_dicom(path: Path, **elements) -> Path:
    dataset = _dataset(ExplicitVRLittleEndian)
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    dataset.save_as(path, enforce_file_format=True)
    return path


def write_raw_dicom(path: Path, **elements: str) -> Path:
    """A DICOM file holding the elements as the text given, valid for their VR or not.

    pydicom refuses to set a DS such as "2300 ms", but scanners and anonymisers write such
    values; stored as LO in an implicit-VR file, they are read back through the element's
    dictionary VR (DS, AS, CS), as such a file would be.
    """
    dataset = _dataset(ImplicitVRLittleEndian)
    for keyword, value in elements.items():
        dataset.add_new(keyword, "LO", value)
    dataset.save_as(path, enforce_file_format=True)
    return path


FLAIR_HEADER = {
    "RepetitionTime": "9000",
    "EchoTime": "81",
    "InversionTime": "2500",
    "FlipAngle": "150",
    "MagneticFieldStrength": "3",
    "Manufacturer": "SIEMENS",
    "PatientAge": "070Y",
    "PatientSex": "F",
    "PixelSpacing": ["0.9", "0.8"],
    "SliceThickness": "3",
    "SeriesDescription": "t2_tirm_tra_dark-fluid",
}


def test_flair_header(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "IM0001.dcm", **FLAIR_HEADER)
    assert metadata_from_dicom(path) == ISSUE_FLAIR.replace(voxel_size=(0.8, 0.9, 3.0))


@pytest.mark.parametrize(
    ("elements", "modality"),
    [
        ({"SeriesDescription": "t1_mprage_sag"}, "T1w"),
        ({"SeriesDescription": "T1 MPRAGE post", "ContrastBolusAgent": "Gadovist"}, "T1CE"),
        ({"ProtocolName": "SWI_Images"}, "SWI"),
        ({"SeriesDescription": "T2* GRE hemo"}, "T2star"),
        ({"SeriesDescription": "PD_tse_cor"}, "PD"),
        ({"SeriesDescription": "t2_tse_tra"}, "T2w"),
        ({"SeriesDescription": "localizer"}, None),
    ],
)
def test_modality_is_guessed_from_descriptions(
    tmp_path: Path, elements: dict, modality: str | None
) -> None:
    assert metadata_from_dicom(write_dicom(tmp_path / "a.dcm", **elements)).modality == modality


def test_missing_elements_stay_unknown(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing element is no reason for a warning
        assert metadata_from_dicom(write_dicom(tmp_path / "a.dcm")) == ImagingMetadata()


def test_other_sex_is_left_out_with_a_warning(tmp_path: Path) -> None:
    with pytest.warns(MetadataWarning, match=r"a\.dcm: DICOM PatientSex 'O' \(other\)"):
        metadata = metadata_from_dicom(write_dicom(tmp_path / "a.dcm", PatientSex="O"))
    assert metadata == ImagingMetadata()


@pytest.mark.parametrize(
    ("age", "years"), [("034Y", 34.0), ("006M", 0.5), ("010W", 0.19), ("030D", 0.08)]
)
def test_dicom_ages(age: str, years: float) -> None:
    assert parse_dicom_age(age) == years


def test_bad_dicom_inputs(tmp_path: Path) -> None:
    text = tmp_path / "notes.dcm"
    text.write_text("not a dicom file")
    with pytest.raises(ImageError, match="not a readable DICOM file"):
        metadata_from_dicom(text)
    with pytest.raises(InputFileError, match="no such DICOM file"):
        metadata_from_dicom(tmp_path / "absent.dcm")
    with pytest.raises(MetadataError, match="PatientAge"):
        parse_dicom_age("seventy")


def test_inconsistent_times_are_left_out_with_a_warning(tmp_path: Path) -> None:
    inconsistent = write_dicom(
        tmp_path / "b.dcm", RepetitionTime="5", EchoTime="10", FlipAngle="12"
    )
    message = (
        "b.dcm: DICOM RepetitionTime and DICOM EchoTime do not fit together "
        "(TE 10 ms must be shorter than TR 5 ms); left out"
    )
    with pytest.warns(MetadataWarning, match=re.escape(message)):
        metadata = metadata_from_dicom(inconsistent)
    assert metadata == ImagingMetadata(flip_angle=12)


@pytest.mark.parametrize(
    ("age", "years"), [("45 Y", 45.0), ("45Y", 45.0), ("99", 99.0), ("045", 45.0), ("6m", 0.5)]
)
def test_non_standard_dicom_ages_are_read(age: str, years: float) -> None:
    assert parse_dicom_age(age) == years


def test_decimal_rescale_from_nibabel() -> None:
    path = NIBABEL_DATA / "decimal_rescale.dcm"
    if not path.is_file():
        pytest.skip(f"{path} is not in this nibabel wheel")
    message = "decimal_rescale.dcm: DICOM PatientAge '99' has no unit; read as 99 years"
    with pytest.warns(MetadataWarning, match=re.escape(message)):
        metadata = metadata_from_dicom(path)
    assert (metadata.tr, metadata.te, metadata.ti, metadata.flip_angle) == (50, 2.5, 6376, 12)
    assert metadata.age == 99
    assert (metadata.field_strength, metadata.manufacturer) == (3, "Siemens")


def _package_test_files() -> list[Path]:
    """Every file of the DICOM test data in the installed nibabel and pydicom wheels (DICOM or
    not: the JSON, CSA and gzip files there must give an ImageError, not a crash)."""
    files = [*NIBABEL_DATA.glob("*"), *(PYDICOM_DATA / "test_files").rglob("*")]
    files += [*(PYDICOM_DATA / "charset_files").glob("*.dcm")]
    return sorted(path for path in files if path.is_file())


def test_package_test_files_are_on_disk() -> None:
    names = {path.name for path in _package_test_files()}
    assert {"decimal_rescale.dcm", "MR_small.dcm", "CT_small.dcm"} <= names


@pytest.mark.parametrize(
    "path", _package_test_files(), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_package_test_files_give_metadata_or_a_user_error(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetadataWarning)
        try:
            metadata = metadata_from_dicom(path)
        except TumsynError:
            return
    assert isinstance(metadata, ImagingMetadata)


# Values as real headers hold them, against the standard: (elements, field, reading, warning).
BAD_VALUES = [
    ({"PatientAge": "99"}, "age", 99, "DICOM PatientAge '99' has no unit; read as 99 years"),
    ({"PatientAge": "045"}, "age", 45, "DICOM PatientAge '045' has no unit; read as 45 years"),
    (
        {"PatientAge": "45 Y"},
        "age",
        45,
        "DICOM PatientAge '45 Y' is not of the form nnnY/M/W/D; read as 45 years",
    ),
    ({"PatientAge": "adult"}, "age", None, "DICOM PatientAge 'adult' is not an age; left out"),
    ({"PatientAge": "150Y"}, "age", None, "DICOM PatientAge 150.0 is not usable (age 150.0"),
    ({"PatientSex": "female"}, "sex", "F", "DICOM PatientSex 'female' is not F, M or O; read as F"),
    ({"PatientSex": "X"}, "sex", None, "DICOM PatientSex 'X' is not F, M or O; left out"),
    (
        {"RepetitionTime": "2300 ms"},
        "tr",
        2300,
        "DICOM RepetitionTime '2300 ms' is not a plain number; read as 2300 ms",
    ),
    (
        {"RepetitionTime": "2.3 s"},
        "tr",
        2300,
        "DICOM RepetitionTime '2.3 s' is not a plain number; read as 2300 ms",
    ),
    ({"RepetitionTime": "abc"}, "tr", None, "DICOM RepetitionTime 'abc' is not a number; left out"),
    (
        {"RepetitionTime": "2300 fortnights"},
        "tr",
        None,
        "DICOM RepetitionTime '2300 fortnights' has an unknown unit 'fortnights'; left out",
    ),
    ({"EchoTime": "2.5\\5.0"}, "te", None, "DICOM EchoTime [2.5, 5.0] holds 2 values; left out"),
    (
        {"MagneticFieldStrength": "3T"},
        "field_strength",
        3,
        "DICOM MagneticFieldStrength '3T' is not a plain number; read as 3 T",
    ),
    (
        {"MagneticFieldStrength": "15000"},
        "field_strength",
        1.5,
        "DICOM MagneticFieldStrength '15000' looks like gauss; read as 1.5 T",
    ),
    ({"FlipAngle": "nan"}, "flip_angle", None, "DICOM FlipAngle 'nan' is not a finite number"),
    ({"FlipAngle": "400"}, "flip_angle", None, "DICOM FlipAngle 400.0 is not usable (flip_angle"),
    (
        {"PixelSpacing": "0.5", "SliceThickness": "3"},
        "voxel_size",
        None,
        "DICOM PixelSpacing '0.5' is not two numbers; voxel size left out",
    ),
    (
        {"PixelSpacing": "0.5\\0.6", "SliceThickness": "3 mm"},
        "voxel_size",
        (0.6, 0.5, 3),
        "DICOM SliceThickness '3 mm' is not a plain number; read as 3 mm",
    ),
    (
        {"Manufacturer": "SonoSite, Inc."},
        "manufacturer",
        "SonoSite Inc.",
        "DICOM Manufacturer 'SonoSite, Inc.' holds prompt separators; read as 'SonoSite Inc.'",
    ),
]


@pytest.mark.parametrize(
    ("elements", "field", "reading", "message"),
    BAD_VALUES,
    ids=[message.split(";")[0] for *_, message in BAD_VALUES],
)
def test_non_standard_values_are_read_or_left_out_with_a_warning(
    tmp_path: Path, elements: dict[str, str], field: str, reading, message: str
) -> None:
    path = write_raw_dicom(tmp_path / "IM0001.dcm", **elements)
    with pytest.warns(MetadataWarning, match=re.escape(f"IM0001.dcm: {message}")):
        metadata = metadata_from_dicom(path)
    assert getattr(metadata, field) == reading


def test_pydicom_warnings_are_replaced_by_ours(tmp_path: Path) -> None:
    path = write_raw_dicom(tmp_path / "IM0001.dcm", PatientAge="99", RepetitionTime="2300 ms")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metadata_from_dicom(path)
    assert [w.category for w in caught] == [MetadataWarning, MetadataWarning]
