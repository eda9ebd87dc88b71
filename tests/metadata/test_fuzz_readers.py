"""Fuzzing the readers of user files: whatever a header, sidecar, prompt or table holds, the
reader gives its result (perhaps with warnings) or raises one of the project's errors, never a
Python error from deep inside (AttributeError, OverflowError, csv.Error...).

Metadata read from any header must also be writable as a prompt and parse back unchanged: a
reader that let through a value the prompt cannot carry would only fail later, in training.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ImplicitVRLittleEndian, MRImageStorage, generate_uid

from tumsyn.data.index import index_manifest
from tumsyn.errors import ConfigError, InputFileError, TumsynError
from tumsyn.metadata import (
    ImagingMetadata,
    format_prompt,
    metadata_from_dicom,
    metadata_from_sidecar,
    parse_prompt,
    read_participants,
)
from tumsyn.metadata.bids import participant_fields
from tumsyn.metadata.prompt import PARAMETERS_LABEL

# tmp_path is shared by the examples of one test; each example overwrites the same file.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Readers warn about most fuzzed values; the warnings are expected, not the subject here.
quiet = pytest.mark.filterwarnings("ignore::UserWarning")

BIDS_KEYS = [
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "MagneticFieldStrength",
    "Manufacturer",
    "ManufacturersModelName",
    "SeriesDescription",
    "SequenceName",
    "PulseSequenceDetails",
    "MRAcquisitionType",
    "VariableFlipAngle",
]
DICOM_KEYWORDS = [
    "PatientAge",
    "PatientSex",
    "RepetitionTime",
    "EchoTime",
    "InversionTime",
    "FlipAngle",
    "MagneticFieldStrength",
    "SliceThickness",
    "PixelSpacing",
    "Manufacturer",
    "SeriesDescription",
]

# Text that looks like what headers hold: numbers with or without units, ages, sexes, lists.
header_words = st.sampled_from(
    ["ms", " ms", "s", "T", " T", "Y", "M", "W", "D", "+", "deg", "°", "mm", "abc", ""]
)
numbers_as_text = st.builds(
    lambda number, unit: f"{number}{unit}",
    st.one_of(
        st.integers(-10, 100000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["045", "2.3", ".5", "1e3", "1e999", "-0"]),
    ),
    header_words,
)
header_texts = st.one_of(
    numbers_as_text,
    st.sampled_from(["F", "M", "O", "female", "n/a", "SIEMENS", "SonoSite, Inc.", "None"]),
    st.text(max_size=12),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**320),  # beyond float range
    st.floats(allow_nan=True, allow_infinity=True),
    header_texts,
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
sidecars = st.dictionaries(
    st.one_of(st.sampled_from(BIDS_KEYS), st.text(max_size=8)), json_values, max_size=8
)


def assert_promptable(metadata: ImagingMetadata) -> None:
    """The metadata a reader gives can be written as a prompt and read back unchanged."""
    assert isinstance(metadata, ImagingMetadata)
    assert parse_prompt(format_prompt(metadata)) == metadata


# --- prompts -----------------------------------------------------------------------------------

PROMPT_LABELS = ["Age", "Gender", "Scanner", "Modality", "Voxel size", PARAMETERS_LABEL]
prompt_values = st.one_of(
    st.text(alphabet=st.characters(blacklist_characters=";"), max_size=15),
    st.sampled_from(["None", "None None", "3.0 Siemens", "(1.0, 1.0, 3.0)", "T2var", "1e999"]),
    st.builds(
        lambda items: f"({', '.join(items)})",
        st.lists(st.one_of(numbers_as_text, st.just("None")), max_size=5),
    ),
)


@st.composite
def near_prompts(draw) -> str:
    """Prompts with the right labels (in any order, some repeated or missing) and fuzzed values:
    plain random text would almost never get past the field split."""
    labels = draw(st.lists(st.sampled_from(PROMPT_LABELS), min_size=5, max_size=7))
    return "; ".join(f"{label}: {draw(prompt_values)}" for label in labels)


@FUZZ
@given(st.one_of(st.text(), near_prompts()))
def test_any_text_parses_as_a_prompt_or_raises_a_user_error(text: str) -> None:
    try:
        metadata = parse_prompt(text)
    except TumsynError:
        return
    assert_promptable(metadata)


# --- BIDS sidecars -------------------------------------------------------------------------------


@quiet
@FUZZ
@given(sidecars)
def test_any_json_sidecar_gives_metadata_or_a_user_error(tmp_path: Path, content: dict) -> None:
    path = tmp_path / "sub-01_T1w.json"
    path.write_text(json.dumps(content))
    try:
        metadata = metadata_from_sidecar(path)
    except TumsynError:
        return
    assert_promptable(metadata)


@quiet
@FUZZ
@given(sidecars)
def test_a_valid_json_sidecar_never_raises(content: dict) -> None:
    # Reading a JSON object never fails for its content: only unreadable files raise.
    assert_promptable(metadata_from_sidecar(content, image_name="sub-01_FLAIR.nii.gz"))


@quiet
@FUZZ
@given(
    st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: b'{"EchoTime": ' + b))
)
def test_any_bytes_as_a_sidecar_give_metadata_or_a_user_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "sub-01_T2w.json"
    path.write_bytes(data)
    try:
        metadata = metadata_from_sidecar(path)
    except TumsynError:
        return
    assert_promptable(metadata)


# --- participants.tsv ------------------------------------------------------------------------


@st.composite
def participants_tables(draw) -> str:
    """A participants.tsv: random text, or the real header with fuzzed cells and ragged rows."""
    if draw(st.booleans()):
        return draw(st.text(max_size=80))
    cell = st.one_of(header_texts, st.sampled_from(["sub-01", "sub-02", "90+", "45Y", " "]))
    rows = st.lists(st.lists(cell, max_size=5).map("\t".join), max_size=4)
    header = draw(st.sampled_from(["participant_id\tage\tsex", "participant_id \tage", "age"]))
    return "\n".join([header, *draw(rows)])


@quiet
@FUZZ
@given(participants_tables())
def test_any_participants_table_gives_rows_or_a_user_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "participants.tsv"
    path.write_text(text, encoding="utf-8")
    try:
        rows = read_participants(path)
    except TumsynError:
        return
    for row in rows.values():
        fields = participant_fields(row)  # never raises: bad cells are left out
        assert_promptable(ImagingMetadata(**fields))
        assert_promptable(metadata_from_sidecar({}, participant=row))


# --- DICOM -----------------------------------------------------------------------------------

dicom_values = st.one_of(
    header_texts,
    st.lists(numbers_as_text, min_size=1, max_size=3).map("\\".join),  # multi-valued elements
)


def write_fuzzed_dicom(path: Path, elements: dict[str, str]) -> Path:
    """A DICOM file whose elements hold the given text, whatever their VR demands (stored as
    LO in an implicit-VR file, so they are read back through the element's dictionary VR)."""
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SpecificCharacterSet = "ISO_IR 192"  # UTF-8, so fuzzed text is stored as it is
    for keyword, value in elements.items():
        dataset.add_new(keyword, "LO", value)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom on values too long or not encodable
        dataset.save_as(path, enforce_file_format=True)
    return path


@quiet
@FUZZ
@given(st.dictionaries(st.sampled_from(DICOM_KEYWORDS), dicom_values, max_size=8))
def test_any_dicom_values_give_metadata_or_a_user_error(tmp_path: Path, elements: dict) -> None:
    path = write_fuzzed_dicom(tmp_path / "IM0001.dcm", elements)
    try:
        metadata = metadata_from_dicom(path)
    except TumsynError:
        return
    assert_promptable(metadata)


@quiet
@FUZZ
@given(st.binary(max_size=300))
def test_any_bytes_after_a_dicom_preamble_give_metadata_or_a_user_error(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / "IM0002.dcm"
    path.write_bytes(b"\0" * 128 + b"DICM" + data)
    try:
        metadata = metadata_from_dicom(path)
    except TumsynError:
        return
    assert_promptable(metadata)


# --- CSV manifest (tumsyn.data.index) ---------------------------------------------------------

FLAIR_PROMPT = (
    "Age: 70; Gender: F; Scanner: 3.0 Siemens; Modality: FLAIR; Voxel size: (1.0, 1.0, 3.0); "
    f"{PARAMETERS_LABEL}: (9000.0, 81.0, 2500.0, 150.0)"
)
MANIFEST_HEADERS = [
    "path,subject,prompt",
    "path,subject,modality,age,sex,tr,te,voxel_size",
    "path, subject ,modality",
    "subject,path",
]
manifest_cells = st.one_of(
    st.just(""),  # often: blank cells in wide rows are a shape that broke the reader
    header_texts,
    st.sampled_from(["img.nii.gz", "./img.nii.gz", "missing.nii.gz", "T1w", "FLAIR", "1x1x3"]),
    st.sampled_from(["", " ", '"a,b"', '"', f'"{FLAIR_PROMPT}"']),
)


@st.composite
def manifests(draw) -> str:
    """A manifest: random text, or a real header with rows of fuzzed cells (ragged, quoted)."""
    if draw(st.booleans()):
        return draw(st.text(max_size=80))
    cells = st.lists(manifest_cells, max_size=6)
    # Spreadsheet exports pad rows with commas: rows of blank cells, then something.
    padded = st.builds(lambda n, rest: "," * n + ",".join(rest), st.integers(1, 6), cells)
    rows = st.lists(st.one_of(cells.map(",".join), padded), max_size=4)
    return "\n".join([draw(st.sampled_from(MANIFEST_HEADERS)), *draw(rows)])


def data_set(tmp_path: Path) -> Path:
    """A data set root holding one 4^3 NIfTI image, with another image outside it."""
    root = tmp_path / "data"
    root.mkdir(exist_ok=True)
    for path in (root / "img.nii.gz", tmp_path / "outside.nii.gz"):
        if not path.is_file():
            nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), path)
    return root


@quiet
@settings(FUZZ, report_multiple_bugs=False)
@given(manifests())
def test_any_manifest_gives_an_index_or_a_user_error(tmp_path: Path, text: str) -> None:
    root = data_set(tmp_path)
    manifest = root / "manifest.csv"
    manifest.write_text(text, encoding="utf-8")
    try:
        records = index_manifest(manifest)
    except TumsynError:
        return
    for record in records:  # the fuzzed rows name no absolute path of an existing file
        assert record.path.resolve().is_relative_to(root.resolve())
        assert_promptable(record.metadata)


# Rows that once made index_manifest raise a Python error (AttributeError from csv.DictReader's
# list of extra cells, ValueError from a NUL byte, OSError ENAMETOOLONG), and a file that is no
# image: each is refused with the project's error, naming the line, on one line.
@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        (",,,", ConfigError, "4 cells, more than the 3 columns"),
        ("img.nii.gz,s01,p,x", ConfigError, "4 cells, more than the 3 columns"),
        ("\x00,F", ConfigError, "holds a NUL byte"),
        (f"{'a' * 256}.nii.gz,s,p", InputFileError, "cannot be looked up"),
        (f'/etc/passwd,s01,"{FLAIR_PROMPT}"', ConfigError, "is not a NIfTI image name"),
    ],
    ids=["blank wide row", "wide row", "NUL in path", "name too long", "no image"],
)
def test_malformed_manifest_rows_name_their_line(
    tmp_path: Path, row: str, error: type, message: str
) -> None:
    manifest = data_set(tmp_path) / "manifest.csv"
    manifest.write_text(f"path,subject,prompt\n{row}\n")
    with pytest.raises(error, match=message) as raised:
        index_manifest(manifest)
    assert str(raised.value).startswith(f"{manifest}:2: ")
    assert "\n" not in str(raised.value)


def test_manifest_relative_paths_stay_in_the_data_set(tmp_path: Path) -> None:
    manifest = data_set(tmp_path) / "manifest.csv"
    manifest.write_text(f'path,subject,prompt\n../outside.nii.gz,s01,"{FLAIR_PROMPT}"\n')
    with pytest.raises(TumsynError):
        index_manifest(manifest)


def test_manifest_absolute_paths_may_lie_outside_the_data_set(tmp_path: Path) -> None:
    manifest = data_set(tmp_path) / "manifest.csv"
    outside = tmp_path / "outside.nii.gz"
    manifest.write_text(f'path,subject,prompt\n{outside},s01,"{FLAIR_PROMPT}"\n')
    (record,) = index_manifest(manifest)
    assert record.path == outside and record.metadata.modality == "FLAIR"
