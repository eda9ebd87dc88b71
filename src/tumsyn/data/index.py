"""The list of training images with their metadata and prompts, from any of three sources.

- a BIDS folder: ``sub-*/[ses-*/]anat/*.nii.gz`` with JSON sidecars and ``participants.tsv``;
- a CSV manifest: one row per image, with a ``prompt`` column or metadata columns;
- the official TUMSyn format: a list of image paths and a prompt file of
  ``"name.nii.gz": "Age: ...; ..."`` lines.

Every source gives the same :class:`ImageRecord` (image path, subject, ``ImagingMetadata`` and its
prompt text); voxel sizes come from the NIfTI headers, never from the voxel data, so indexing a
large data set reads only headers. The prompt is always ``format_prompt(metadata)``, so the same
acquisition described by a sidecar or by a hand-written prompt gives the same text.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tumsyn.errors import ConfigError, InputFileError, MetadataError
from tumsyn.io import read_grid, voxel_sizes
from tumsyn.metadata import (
    ImagingMetadata,
    format_prompt,
    metadata_from_sidecar,
    modality_from_bids_name,
    parse_prompt,
    prompt_voxel_size,
    read_participants,
    read_prompt_file,
    sidecar_path,
)
from tumsyn.metadata.bids import anat_images, bids_entities

__all__ = [
    "ImageRecord",
    "index_bids",
    "index_manifest",
    "index_prompt_files",
    "load_index",
    "split_subjects",
]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_MISSING = {"", "n/a", "na", "nan", "none"}
# Manifest metadata columns, as ImagingMetadata fields (voxel_size optional: header otherwise).
_METADATA_COLUMNS = (
    "modality",
    "age",
    "sex",
    "field_strength",
    "manufacturer",
    "tr",
    "te",
    "ti",
    "flip_angle",
    "voxel_size",
)


@dataclass(frozen=True)
class ImageRecord:
    """One training image.

    Args:
        path: the NIfTI file.
        subject: images of the same subject (and session) are co-registered and form pairs;
            ``"sub-01"`` or ``"sub-01/ses-1"`` for BIDS.
        metadata: what the prompt says about the image.
        prompt: ``format_prompt(metadata)``.
    """

    path: Path
    subject: str
    metadata: ImagingMetadata
    prompt: str


def _record(path: Path, subject: str, metadata: ImagingMetadata) -> ImageRecord:
    prompt = format_prompt(metadata)
    return ImageRecord(path=path, subject=subject, metadata=metadata, prompt=prompt)


def _header_voxel_size(path: Path) -> tuple[float, float, float]:
    return prompt_voxel_size(voxel_sizes(read_grid(path).affine))


def index_bids(root: str | os.PathLike) -> list[ImageRecord]:
    """Every anatomical image of one of the seven modalities in a BIDS folder, sorted by path.

    Metadata comes from each image's JSON sidecar (times, flip angle, scanner), the subject's row
    of ``participants.tsv`` (age, sex) and the header (voxel size, rounded to 0.01 mm as prompts
    are). An image without a sidecar gets what its name, ``participants.tsv`` and header say.
    Other suffixes (``dwi``, ``probseg``...) and ``derivatives/`` are ignored.

    Raises:
        InputFileError: ``root`` is not a folder.
        MetadataError, ImageError: a sidecar, ``participants.tsv`` or header is unusable (the
            message names the file).
    """
    root = Path(root)
    images = anat_images(root)
    participants_file = root / "participants.tsv"
    participants = read_participants(participants_file) if participants_file.is_file() else {}
    records = []
    for path in images:
        modality = modality_from_bids_name(path.name)
        if modality is None:
            continue
        session_folder = path.parent.parent
        if session_folder.name.startswith("ses-"):
            subject_id, subject = session_folder.parent.name, f"{session_folder.parent.name}/"
            subject += session_folder.name
        else:
            subject_id = subject = session_folder.name
        sidecar = sidecar_path(path)
        metadata = metadata_from_sidecar(
            sidecar if sidecar.is_file() else {},
            image_name=path.name,
            participant=participants.get(subject_id),
            voxel_size=_header_voxel_size(path),
        )
        records.append(_record(path, subject, metadata))
    return records


def _parse_voxel_size(text: str, where: str) -> tuple[float, float, float]:
    parts = [p for p in re.split(r"[\s,x×()\[\]]+", text.strip()) if p]
    try:
        sizes = [float(p) for p in parts]
    except ValueError:
        sizes = []
    if len(sizes) == 1:
        sizes *= 3
    if len(sizes) != 3:
        raise MetadataError(
            f"{where}: voxel_size must be one number or three such as 1x1x3, got {text!r}"
        )
    return tuple(sizes)  # type: ignore[return-value]


def _manifest_metadata(row: dict[str, str], path: Path, where: str) -> ImagingMetadata:
    if "prompt" in row:
        text = (row["prompt"] or "").strip()
        if not text:
            raise MetadataError(f"{where}: the prompt is empty")
        metadata = parse_prompt(text)
        if metadata.voxel_size is None:
            metadata = metadata.replace(voxel_size=_header_voxel_size(path))
        return metadata
    fields: dict[str, Any] = {}
    for column in _METADATA_COLUMNS:
        value = (row.get(column) or "").strip()
        if value.lower() in _MISSING:
            continue
        fields[column] = _parse_voxel_size(value, where) if column == "voxel_size" else value
    if "modality" not in fields:
        raise MetadataError(f"{where}: the modality is empty")
    if "voxel_size" not in fields:
        fields["voxel_size"] = _header_voxel_size(path)
    return ImagingMetadata(**fields)


def _manifest_image(text_path: str, folder: Path, where: str) -> Path:
    """The image a manifest cell names, checked before anything is read from it.

    A cell may hold anything a spreadsheet can: the checks come in the order that keeps the
    file system from raising its own errors (a NUL byte makes every path call fail, an
    over-long name makes ``is_file`` fail), so each problem is reported against its line.
    A name that is not NIfTI is refused here because a prompt giving the voxel size would let
    the file through unopened (``/etc/passwd`` as a training image).
    """
    if "\0" in text_path:
        raise ConfigError(f"{where}: the path {text_path!r} holds a NUL byte")
    if not text_path.lower().endswith(_NIFTI_SUFFIXES):
        raise ConfigError(f"{where}: {text_path!r} is not a NIfTI image name (.nii or .nii.gz)")
    path = Path(text_path)
    if not path.is_absolute():
        path = folder / path
        if not path.resolve().is_relative_to(folder.resolve()):
            raise ConfigError(
                f"{where}: the relative path {text_path} leaves the manifest's folder "
                f"{folder}; give images outside it as absolute paths"
            )
    try:
        found = path.is_file()
    except OSError as error:  # a name too long for the file system, a folder one may not enter
        raise InputFileError(
            f"{where}: image {path} cannot be looked up ({error.strerror})"
        ) from None
    if not found:
        raise InputFileError(f"{where}: image {path} does not exist")
    return path


def index_manifest(csv_path: str | os.PathLike) -> list[ImageRecord]:
    """Images listed in a CSV manifest, in file order.

    Columns: ``path`` (absolute, or relative to the CSV's folder and inside it: a relative path
    never climbs out with ``..``), ``subject``, and either
    ``prompt`` (TUMSyn prompt text) or metadata columns: ``modality`` (required) and any of
    ``age, sex, field_strength, manufacturer, tr, te, ti, flip_angle, voxel_size`` (empty or
    ``n/a`` = unknown; ``voxel_size`` such as ``1x1x3``, from the header when absent). Times in
    ms, as in prompts.

    Example manifest::

        path,subject,modality,age,sex,field_strength,manufacturer,tr,te,ti,flip_angle
        s01/t1.nii.gz,s01,T1w,34,F,3,Siemens,2300,2.98,900,9

    Raises:
        InputFileError: the CSV or an image it names does not exist (or cannot be looked up).
        ConfigError: missing, unknown or conflicting columns; a row with more cells than the
            header; a path that is no ``.nii``/``.nii.gz`` name, or a relative one leaving the
            CSV's folder.
        MetadataError: a row's metadata is invalid (the message gives the line).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise InputFileError(f"{csv_path}: no such manifest file")
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = _manifest_columns(reader, csv_path)
            return [
                record
                for row in reader
                if (record := _manifest_row(row, columns, csv_path, reader.line_num))
            ]
    except (UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{csv_path}: not a readable UTF-8 CSV manifest ({error})") from None


def _manifest_columns(reader: csv.DictReader, csv_path: Path) -> list[str]:
    """The header's column names (stripped), refused if missing, unknown or conflicting."""
    columns = [c.strip() for c in reader.fieldnames or []]
    reader.fieldnames = columns
    allowed = {"path", "subject", "prompt", *_METADATA_COLUMNS}
    missing = [c for c in ("path", "subject") if c not in columns]
    if "prompt" not in columns and "modality" not in columns:
        missing.append("prompt (or modality and the other metadata columns)")
    if missing:
        raise ConfigError(
            f"{csv_path}: the manifest lacks the column(s) {', '.join(missing)}; it needs "
            "path, subject and either prompt or metadata columns "
            f"({', '.join(_METADATA_COLUMNS)})"
        )
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise ConfigError(
            f"{csv_path}: unknown column(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(allowed))}"
        )
    conflicting = [c for c in columns if c in _METADATA_COLUMNS]
    if "prompt" in columns and conflicting:
        raise ConfigError(
            f"{csv_path}: give either a prompt column or metadata columns, not both "
            f"(found prompt and {', '.join(conflicting)})"
        )
    return columns


def _manifest_row(row: dict, columns: list[str], csv_path: Path, line: int) -> ImageRecord | None:
    """The record of one manifest row (``None`` for a blank row)."""
    where = f"{csv_path}:{line}"
    if None in row:  # csv.DictReader puts the cells beyond the header in a list there
        raise ConfigError(
            f"{where}: {len(columns) + len(row[None])} cells, more than the "
            f"{len(columns)} columns of the header ({', '.join(columns)})"
        )
    if all(not (value or "").strip() for value in row.values()):
        return None
    text_path = (row.get("path") or "").strip()
    subject = (row.get("subject") or "").strip()
    if not text_path or not subject:
        raise ConfigError(f"{where}: path and subject must not be empty")
    path = _manifest_image(text_path, csv_path.parent, where)
    try:
        metadata = _manifest_metadata(row, path, where)
    except MetadataError as error:
        message = str(error)
        if not message.startswith(where):
            message = f"{where}: {message}"
        raise type(error)(message) from None
    return _record(path, subject, metadata)


def _subject_from_name(name: str) -> str:
    entities, _ = bids_entities(name)
    if "sub" in entities:
        subject = f"sub-{entities['sub']}"
        return f"{subject}/ses-{entities['ses']}" if "ses" in entities else subject
    stem = name
    for suffix in _NIFTI_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    return stem.split("_", 1)[0]


def index_prompt_files(
    image_list: str | os.PathLike, prompt_file: str | os.PathLike
) -> list[ImageRecord]:
    """Images in the official TUMSyn format, in list order.

    Args:
        image_list: text file, one image path per line (relative paths are relative to the
            list's folder; blank lines and ``#`` comments are skipped).
        prompt_file: ``"name.nii.gz": "Age: ...; ..."`` lines, keyed by the image's file name (or
            by the path exactly as the list writes it).

    The subject is the BIDS ``sub-`` entity of the name (with ``ses-`` if present), otherwise the
    file name up to the first ``_``. A prompt whose voxel size is ``None`` gets the header's.

    Raises:
        InputFileError: a file does not exist.
        MetadataError: an image has no prompt, or its prompt does not parse.
    """
    image_list, prompt_file = Path(image_list), Path(prompt_file)
    if not image_list.is_file():
        raise InputFileError(f"{image_list}: no such image list")
    prompts = read_prompt_file(prompt_file)
    records = []
    lines = image_list.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        where = f"{image_list}:{number}"
        path = Path(entry)
        if not path.is_absolute():
            path = image_list.parent / path
        if not path.is_file():
            raise InputFileError(f"{where}: image {path} does not exist")
        text = prompts.get(entry, prompts.get(path.name))
        if text is None:
            raise MetadataError(f"{where}: {prompt_file} has no prompt for {path.name!r}")
        try:
            metadata = parse_prompt(text)
        except MetadataError as error:
            raise type(error)(f"{prompt_file}: prompt of {path.name!r}: {error}") from None
        if metadata.voxel_size is None:
            metadata = metadata.replace(voxel_size=_header_voxel_size(path))
        records.append(_record(path, _subject_from_name(path.name), metadata))
    return records


def load_index(
    source: str | os.PathLike, *, prompt_file: str | os.PathLike | None = None
) -> list[ImageRecord]:
    """The images of a data set: a BIDS folder, a ``.csv`` manifest, or (with ``prompt_file``)
    an official-format image list.

    Raises:
        InputFileError: ``source`` does not exist.
        ConfigError: ``source`` is of no accepted kind, or holds no usable image.
    """
    source = Path(source)
    if prompt_file is not None:
        records = index_prompt_files(source, prompt_file)
    elif source.is_dir():
        records = index_bids(source)
    elif source.suffix.lower() == ".csv":
        records = index_manifest(source)
    elif not source.exists():
        raise InputFileError(
            f"{source}: no such file or folder (expected a BIDS folder or a .csv manifest)"
        )
    else:
        raise ConfigError(
            f"{source}: not a data set; give a BIDS folder, a .csv manifest, or an image list "
            "with its prompt file"
        )
    if not records:
        raise ConfigError(
            f"{source}: no images found (BIDS: sub-*/[ses-*/]anat/*.nii.gz named T1w, T2w, "
            "FLAIR, PDw, T2starw, rec-swi T2starw or ce- T1w)"
        )
    return records


def split_subjects(
    records: Sequence[ImageRecord], validation_fraction: float, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """Split records into training and validation sets by subject, deterministically.

    ``round(validation_fraction * subjects)`` subjects, drawn with ``seed``, go to validation; at
    least one when the fraction is above 0 and there are two subjects or more, and never all of
    them. Both lists keep the records' order; the split depends only on the set of subjects and
    ``seed``, not on the order of ``records``.
    """
    fraction = float(validation_fraction)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    subjects = sorted({record.subject for record in records})
    count = round(fraction * len(subjects))
    if fraction > 0 and len(subjects) >= 2:
        count = min(max(count, 1), len(subjects) - 1)
    order = np.random.default_rng(seed).permutation(len(subjects))
    validation_subjects = {subjects[i] for i in order[:count]}
    train = [r for r in records if r.subject not in validation_subjects]
    validation = [r for r in records if r.subject in validation_subjects]
    return train, validation
