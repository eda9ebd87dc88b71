"""Metadata from BIDS: JSON sidecars, file names and ``participants.tsv``.

BIDS stores times in seconds (``RepetitionTime``, ``EchoTime``, ``InversionTime``); prompts use
milliseconds. The modality is not in the sidecar but in the file name: the suffix (``T1w``,
``FLAIR``, ``PDw``, ``T2starw``...) and the ``ce-`` entity, which turns a T1w into a T1CE.

Real sidecars and participants files break the standard in many ways (a TR of ``"2300 ms"`` or
``2300``, a field strength ``"3T"``, an age ``"45Y"`` or ``"90+"``). Such a value is read as well as
it can be, or left out, with a :class:`~tumsyn.errors.MetadataWarning` naming the file, the field
and the value; only a file that cannot be read at all makes the reading fail. The helpers that
do this, shared with the DICOM reader, are in :mod:`tumsyn.metadata.lenient`.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumsyn.errors import InputFileError, MetadataError
from tumsyn.metadata.lenient import (
    DEGREE_UNITS,
    GAUSS_IN_TESLA,
    MS_UNITS,
    TESLA_UNITS,
    YEAR_UNITS,
    lenient_metadata,
    read_manufacturer,
    read_number,
    shown,
    usable_fields,
    warn_metadata,
)
from tumsyn.metadata.modalities import canonical_modality
from tumsyn.metadata.record import ImagingMetadata, canonical_sex

__all__ = [
    "anat_images",
    "bids_entities",
    "bids_image_name",
    "find_participant",
    "metadata_from_sidecar",
    "modality_from_bids_name",
    "modality_from_file_name",
    "participant_fields",
    "read_participants",
    "sidecar_from_metadata",
    "sidecar_path",
]

_TIME_FIELDS = {"RepetitionTime": "tr", "EchoTime": "te", "InversionTime": "ti"}
# The sidecar key (or source) each ImagingMetadata field is read from, as warnings name it.
_SIDECAR_LABELS = {
    **{field: key for key, field in _TIME_FIELDS.items()},
    "flip_angle": "FlipAngle",
    "field_strength": "MagneticFieldStrength",
    "manufacturer": "Manufacturer",
    "modality": "modality of the file name",
    "voxel_size": "voxel_size",
    "age": "participants.tsv age",
    "sex": "participants.tsv sex",
}
# No sequence has a TR, TE or TI of 100 s or more: such a sidecar value is in milliseconds.
_MILLISECONDS_IN_SECONDS = (100.0, "ms", "looks like milliseconds (BIDS sidecars give seconds)")
_NOT_AVAILABLE = {"", "n/a", "na", "nan", "none"}
# BIDS allows sex "O" (other); prompts only know F and M, so it becomes unknown.
_UNKNOWN_SEX = {"o", "other"}
# BIDS suffix and entities of each modality. BIDS has no SWI suffix: a susceptibility-weighted
# image is a reconstruction of a T2*-weighted gradient echo, hence rec-swi.
_BIDS_NAMES: dict[str, tuple[str, dict[str, str]]] = {
    "T1w": ("T1w", {}),
    "T1CE": ("T1w", {"ce": "gadolinium"}),
    "T2w": ("T2w", {}),
    "FLAIR": ("FLAIR", {}),
    "PD": ("PDw", {}),
    "T2star": ("T2starw", {}),
    "SWI": ("T2starw", {"rec": "swi"}),
}
# Entity order of BIDS file names (raw anat, then the derivatives entities, desc last).
_ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "trc", "stain", "rec", "dir", "run", "mod", "echo", "flip",
    "inv", "mt", "part", "proc", "hemi", "space", "split", "recording", "chunk", "seg", "res",
    "den", "label", "desc",
)  # fmt: skip
# Sequence names of 3D variable-flip-angle TSE (prompt flip angle "T2var"): Siemens SPACE
# ("spc", "tse_vfl"), GE CUBE, Philips VISTA; and tumsyn's own sidecar key.
_VARIABLE_FLIP_HINTS = ("spc", "tse_vfl", "cube", "vista")
_VARIABLE_FLIP_KEY = "VariableFlipAngle"


def _strip_nifti_suffix(name: str) -> str:
    for ext in (".nii.gz", ".nii", ".json"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def bids_entities(name: str) -> tuple[dict[str, str], str]:
    """Entities and suffix of a BIDS file name.

    Example:
        >>> bids_entities("sub-01_ce-gadolinium_T1w.nii.gz")
        ({'sub': '01', 'ce': 'gadolinium'}, 'T1w')
    """
    *pairs, suffix = _strip_nifti_suffix(Path(name).name).split("_")
    entities = dict(pair.split("-", 1) for pair in pairs if "-" in pair)
    return entities, suffix


def modality_from_bids_name(name: str) -> str | None:
    """The TUMSyn modality of a BIDS image name, or ``None`` if the suffix is not one of them."""
    entities, suffix = bids_entities(name)
    try:
        modality = canonical_modality(suffix)
    except MetadataError:
        return None
    if modality == "T1w" and "ce" in entities:
        return "T1CE"
    if modality == "T2star" and entities.get("rec", "").lower() == "swi":
        return "SWI"
    return modality


def modality_from_file_name(name: str) -> str | None:
    """The modality a user's file name states: its BIDS suffix, else the last of its words
    (split at ``-``, ``_``, ``.`` and spaces) that names one, as in public data sets' names
    (IXI's ``IXI002-Guys-0828-T2.nii.gz``, ``t1_mprage.nii``); ``None`` if no word does.

    Only for routing a user's input (a wrong guess costs a worse image, and an explicit modality
    wins); a BIDS data set is indexed by :func:`modality_from_bids_name` alone.
    """
    from_bids = modality_from_bids_name(name)
    if from_bids is not None:
        return from_bids
    for word in reversed(re.split(r"[-_.\s]+", _strip_nifti_suffix(Path(name).name))):
        try:
            return canonical_modality(word)
        except MetadataError:
            continue
    return None


def bids_image_name(
    subject: str,
    modality: str,
    *,
    session: str | None = None,
    acq: str | None = None,
    entities: Mapping[str, str] | None = None,
) -> str:
    """The BIDS file name (``.nii.gz``) of an image of a modality.

    Args:
        entities: further entities such as ``run`` or ``desc``, placed in BIDS order (unknown
            ones just before ``desc``); the modality's own ``ce``/``rec`` win over these.

    Example:
        >>> bids_image_name("001", "SWI", acq="swi")
        'sub-001_acq-swi_rec-swi_T2starw.nii.gz'
        >>> bids_image_name("001", "FLAIR", entities={"run": "2", "desc": "tumsyn"})
        'sub-001_run-2_desc-tumsyn_FLAIR.nii.gz'
    """
    suffix, extra = _BIDS_NAMES[canonical_modality(modality)]
    given = {"sub": subject, "ses": session, "acq": acq}
    values = {**(entities or {}), **{k: v for k, v in given.items() if v}, **extra}
    order = [key for key in _ENTITY_ORDER if key != "desc"]
    order += [key for key in values if key not in _ENTITY_ORDER] + ["desc"]
    parts = [f"{key}-{values[key]}" for key in order if values.get(key)]
    return "_".join([*parts, suffix]) + ".nii.gz"


def sidecar_from_metadata(metadata: ImagingMetadata) -> dict[str, Any]:
    """BIDS sidecar fields of a protocol: times in seconds, flip angle, scanner.

    A ``T2var`` flip angle has no BIDS number; it is written as ``"VariableFlipAngle": true`` and
    read back as ``T2var``.
    """
    sidecar: dict[str, Any] = {}
    for key, field in _TIME_FIELDS.items():
        value = getattr(metadata, field)
        if value is not None:
            sidecar[key] = round(value / 1000.0, 9)
    if isinstance(metadata.flip_angle, str):
        sidecar[_VARIABLE_FLIP_KEY] = True
        sidecar["MRAcquisitionType"] = "3D"
    elif metadata.flip_angle is not None:
        sidecar["FlipAngle"] = metadata.flip_angle
    if metadata.field_strength is not None:
        sidecar["MagneticFieldStrength"] = metadata.field_strength
    if metadata.manufacturer is not None:
        sidecar["Manufacturer"] = metadata.manufacturer
    return sidecar


def _flip_angle(content: Mapping[str, Any], source: str) -> float | str | None:
    """``T2var`` for variable-flip-angle sequences (their FlipAngle is only the refocusing
    angle the scanner reports), else the FlipAngle in degrees."""
    if content.get(_VARIABLE_FLIP_KEY) is True:
        return "T2var"
    names = " ".join(
        str(content.get(key, "")) for key in ("SequenceName", "PulseSequenceDetails")
    ).lower()
    if any(hint in names for hint in _VARIABLE_FLIP_HINTS):
        return "T2var"
    value = content.get("FlipAngle")
    return read_number(
        value, "FlipAngle", source, units=DEGREE_UNITS, default_unit="deg", unit_name="degrees"
    )


def sidecar_path(image: str | os.PathLike) -> Path:
    """The JSON sidecar that belongs to a NIfTI image (same name, ``.json``)."""
    image = Path(image)
    return image.with_name(_strip_nifti_suffix(image.name) + ".json")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputFileError(f"{path}: no such sidecar file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputFileError(f"{path}: the sidecar cannot be read ({error})") from None
    except UnicodeDecodeError as error:
        raise MetadataError(f"{path}: not valid JSON ({error})") from None
    try:
        content = json.loads(text)
    except (ValueError, RecursionError) as error:  # ValueError: also a 5000-digit integer
        raise MetadataError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(content, dict):
        raise MetadataError(f"{path}: a BIDS sidecar must hold a JSON object")
    return content


def metadata_from_sidecar(
    sidecar: str | os.PathLike | Mapping[str, Any],
    *,
    image_name: str | None = None,
    participant: Mapping[str, str] | None = None,
    voxel_size: tuple[float, float, float] | None = None,
) -> ImagingMetadata:
    """``ImagingMetadata`` from a BIDS sidecar, its image name and the subject's participants row.

    Args:
        sidecar: path of a ``.json`` sidecar, or its already-loaded content.
        image_name: BIDS file name giving the modality; defaults to the sidecar's own name.
        participant: the subject's row of ``participants.tsv`` (``age``, ``sex`` columns).
        voxel_size: in mm, usually from the image header (sidecars do not hold it).
    """
    if isinstance(sidecar, Mapping):
        content, source = dict(sidecar), "sidecar"
    else:
        path = Path(sidecar)
        content, source = _read_json(path), str(path)
        image_name = image_name or path.name
    if voxel_size is not None:  # given by the caller, not read from the file: checked strictly
        try:
            ImagingMetadata(voxel_size=voxel_size)
        except MetadataError as error:
            raise MetadataError(f"{source}: {error}") from None
    fields = _sidecar_fields(content, source)
    fields["modality"] = modality_from_bids_name(image_name) if image_name else None
    fields["voxel_size"] = voxel_size
    if participant is not None:
        fields.update(participant_fields(participant))
    return lenient_metadata(fields, _SIDECAR_LABELS, source)


def _sidecar_fields(content: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The acquisition fields of a sidecar's content, each read as well as it can be."""
    fields: dict[str, Any] = {
        field: read_number(
            content.get(key),
            key,
            source,
            units=MS_UNITS,
            default_unit="s",
            unit_name="ms",
            large=_MILLISECONDS_IN_SECONDS,
        )
        for key, field in _TIME_FIELDS.items()
    }
    fields["field_strength"] = read_number(
        content.get("MagneticFieldStrength"),
        "MagneticFieldStrength",
        source,
        units=TESLA_UNITS,
        default_unit="t",
        unit_name="T",
        large=GAUSS_IN_TESLA,
    )
    fields["manufacturer"] = read_manufacturer(content.get("Manufacturer"), "Manufacturer", source)
    fields["flip_angle"] = _flip_angle(content, source)
    return fields


def participant_fields(row: Mapping[str, str]) -> dict[str, Any]:
    """Age and sex of a ``participants.tsv`` row as ImagingMetadata fields.

    ``n/a`` and sex ``O`` are left out silently (BIDS allows them; prompts know only F and M);
    unreadable or out-of-range values are left out with a warning, so a bad row never stops the
    indexing of a data set.
    """
    who = _cell(row, "participant_id") or "participant ?"
    age = _cell(row, "age")
    sex = _cell(row, "sex")
    fields: dict[str, Any] = {}
    if age.lower() not in _NOT_AVAILABLE:
        fields["age"] = read_number(
            age,
            f"{who} age",
            "participants.tsv",
            units=YEAR_UNITS,
            default_unit="y",
            unit_name="years",
            plain_text=True,
        )
    if sex.lower() not in _NOT_AVAILABLE | _UNKNOWN_SEX:
        fields["sex"] = _participant_sex(sex, who)
    labels = {"age": f"{who} age", "sex": f"{who} sex"}
    return usable_fields(fields, labels, "participants.tsv")


def _cell(row: Mapping[str, Any], column: str) -> str:
    """A cell of a TSV row, stripped; ``""`` when the row is too short for it (or not text)."""
    value = row.get(column)
    return value.strip() if isinstance(value, str) else ""


def _participant_sex(sex: str, who: str) -> str | None:
    """``F`` or ``M`` from the spellings BIDS allows; anything else left out with a warning."""
    try:
        return canonical_sex(sex)
    except MetadataError:
        warn_metadata(f"participants.tsv: {who} sex {shown(sex)} is not F, M or O; left out")
        return None


def read_participants(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Rows of a BIDS ``participants.tsv``, keyed by ``participant_id`` (``"sub-01"``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such participants file")
    try:
        # utf-8-sig: spreadsheet programs start the file with a byte-order mark.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return _participant_rows(handle, path)
    except UnicodeDecodeError as error:
        raise MetadataError(f"{path}: not a UTF-8 text file ({error})") from None
    except csv.Error as error:
        raise MetadataError(f"{path}: not a readable TSV file ({error})") from None
    except OSError as error:
        raise InputFileError(f"{path}: the participants file cannot be read ({error})") from None


def _participant_rows(handle: Any, path: Path) -> dict[str, dict[str, str]]:
    """The rows of an open participants file by participant_id; column names are stripped,
    since hand-edited files often carry stray spaces after them."""
    reader = csv.DictReader(handle, delimiter="\t")
    if reader.fieldnames is None:
        raise MetadataError(f"{path}: a participants.tsv needs a participant_id column")
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    if "participant_id" not in reader.fieldnames:
        raise MetadataError(f"{path}: a participants.tsv needs a participant_id column")
    rows = {}
    for row in reader:
        participant = _cell(row, "participant_id")
        if participant:
            rows[participant] = row
    return rows


def find_participant(
    image: str | os.PathLike, participants: str | os.PathLike | None = None
) -> dict[str, str] | None:
    """The ``participants.tsv`` row of the subject an image belongs to, if there is one.

    Without ``participants``, the file is looked for where the BIDS root can be: two folders up
    (``sub-X/anat/``) or three (``sub-X/ses-Y/anat/``). Returns ``None`` when no file or no row is
    found.
    """
    image = Path(image)
    subject = bids_entities(image.name)[0].get("sub")
    if subject is None:
        return None
    if participants is None:
        roots = image.resolve().parents[2:4]
        candidates = (folder / "participants.tsv" for folder in roots)
        participants = next((c for c in candidates if c.is_file()), None)
        if participants is None:
            return None
    return read_participants(participants).get(f"sub-{subject}")


def anat_images(root: str | os.PathLike) -> list[Path]:
    """The NIfTI files of a BIDS folder's anatomical folders, sorted: ``sub-*/[ses-*/]anat/*``.

    Only ``.nii`` and ``.nii.gz`` files count, so sidecars and folders are passed over; dot-files
    are too (macOS ``._*`` resource forks and the temporary files of unfinished atomic writes look
    like images by name but are not). Which of these images a caller wants (a modality, a suffix)
    is left to the caller.

    Raises:
        InputFileError: ``root`` is not a folder (a typo would otherwise look like no images).
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: no such BIDS folder")
    candidates = [*root.glob("sub-*/anat/*"), *root.glob("sub-*/ses-*/anat/*")]
    return sorted(
        path
        for path in candidates
        if not path.name.startswith(".")
        and path.name.lower().endswith((".nii", ".nii.gz"))
        and path.is_file()
    )
