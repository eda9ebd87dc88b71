"""DICOM headers -> ImagingMetadata, on DICOM files the tests write with pydicom."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from helpers import ISSUE_FLAIR
from tumsyn.errors import ImageError, MetadataError
from tumsyn.metadata import ImagingMetadata, metadata_from_dicom
from tumsyn.metadata.dicom import parse_dicom_age


def write_dicom(path: Path, **elements) -> Path:
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.Modality = "MR"
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
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
    with pytest.raises(MetadataError, match="PatientAge"):
        parse_dicom_age("seventy")
    inconsistent = write_dicom(tmp_path / "b.dcm", RepetitionTime="5", EchoTime="10")
    with pytest.raises(MetadataError, match="b.dcm: TE 10 ms must be shorter than TR 5 ms"):
        metadata_from_dicom(inconsistent)
