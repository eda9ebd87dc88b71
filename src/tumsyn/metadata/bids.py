"""Metadata from BIDS: JSON sidecars, file names and ``participants.tsv``.

BIDS stores times in seconds (``RepetitionTime``, ``EchoTime``, ``InversionTime``); prompts use
milliseconds. The modality is not in the sidecar but in the file name: the suffix (``T1w``,
``FLAIR``, ``PDw``, ``T2starw``...) and the ``ce-`` entity, which turns a T1w into a T1CE.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from tumsyn.errors import InputFileError, MetadataError, MetadataWarning
from tumsyn.metadata.modalities import canonical_modality
from tumsyn.metadata.record import ImagingMetadata, canonical_manufacturer, canonical_sex

__all__ = [
    "anat_images",
    "bids_entities",
    "bids_image_name",
    "find_participant",
    "metadata_from_sidecar",
    "modality_from_bids_name",
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
# No sequence has a TR, TE or TI of 100 s or more: such a sidecar value is in milliseconds. No
# scanner has 100 T or more: such a field strength is in gauss (older GE headers: 15000).
_MILLISECONDS_IN_SECONDS = (100.0, "ms", "looks like milliseconds (BIDS sidecars give seconds)")
GAUSS_IN_TESLA = (100.0, "g", "looks like gauss")
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


def warn_metadata(message: str) -> None:
    """Report an optional header field that was left out or read as best it could be.

    A warning, not an error: a header's content never stops the reading. The message is kept to
    one line (a path or value with a line break would split it) so the command line can print it
    as one.
    """
    warnings.warn(" ".join(message.splitlines()), MetadataWarning, stacklevel=2)


def shown(value: Any) -> str:
    """``repr`` of a header value for a warning, cut short: fuzzed or corrupt headers can hold
    kilobytes in one field, and the warning must stay one readable line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Quantity(NamedTuple):
    """A number read from a header value, with the unit text that came with it.

    Args:
        number: the number, or ``None`` when none could be read (or the field is empty).
        unit: the unit written after the number, lower case; ``""`` when there was none.
        problem: why the value is not a plain number (text, a list...), or ``None``.
    """

    number: float | None
    unit: str = ""
    problem: str | None = None


# A number with an optional unit after it ("2300 ms", "3T", "45 Y", "90+"); ASCII digits only.
_NUMBER_WITH_UNIT = re.compile(
    r"\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(\D*?)\s*", re.ASCII
)
# Unit texts, as factors to the unit ImagingMetadata keeps each kind of value in.
MS_UNITS = {"ms": 1.0, "msec": 1.0, "s": 1000.0, "sec": 1000.0, "us": 1e-3, "µs": 1e-3}
TESLA_UNITS = {"t": 1.0, "tesla": 1.0, "g": 1e-4, "gauss": 1e-4, "mt": 1e-3}
DEGREE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0}
MM_UNITS = {"mm": 1.0}
YEAR_UNITS = {
    **dict.fromkeys(["y", "yr", "yrs", "year", "years", "+"], 1.0),  # "90+": 90 or older
    **dict.fromkeys(["m", "mo", "month", "months"], 1.0 / 12.0),
    **dict.fromkeys(["w", "wk", "week", "weeks"], 7.0 / 365.25),
    **dict.fromkeys(["d", "day", "days"], 1.0 / 365.25),
}
# Text that separates prompt fields, so a vendor name cannot hold it.
_PROMPT_SEPARATORS = re.compile(r"[;:(),\"\s]+")


def read_quantity(value: Any) -> Quantity:
    """The number in a header value as it may arrive: ``2.3``, ``"2.3"``, ``"2300 ms"``, ``[5]``.

    Nothing is converted or judged here beyond finding the number; the caller knows the field's
    units. Empty values (``None``, blank text) give ``Quantity(None)`` with no problem: absent.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return Quantity(None)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        if len(value) != 1:
            return Quantity(None, problem=f"holds {len(value)} values")
        inner = read_quantity(value[0])
        return inner._replace(problem=inner.problem or "is a list")
    if isinstance(value, str):
        match = _NUMBER_WITH_UNIT.fullmatch(value)
        if match is None:
            return Quantity(None, problem="is not a number")
        unit = match.group(2).strip().lower()
        problem = "is not a plain number" if unit else "is text, not a number"
        return _finite(Quantity(float(match.group(1)), unit, problem))
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            return _finite(Quantity(float(value)))
        except OverflowError:  # a JSON integer beyond float range
            return Quantity(None, problem="is too large a number")
    return Quantity(None, problem="is not a number")


def _finite(quantity: Quantity) -> Quantity:
    """``quantity``, or no number when it is infinite or NaN: no field has a use for those."""
    if quantity.number is None or math.isfinite(quantity.number):
        return quantity
    return Quantity(None, problem="is not a finite number")


def read_number(
    value: Any,
    label: str,
    source: str,
    *,
    units: Mapping[str, float],
    default_unit: str,
    unit_name: str,
    large: tuple[float, str, str] | None = None,
    plain_text: bool = False,
) -> float | None:
    """A header number in the field's unit, read as well as it can be, or ``None``.

    Anything that is not a plain number in the standard unit gets one warning naming the field,
    the value and the reading (or "left out").

    Args:
        units: unit texts -> factor to the field's unit, e.g. ``MS_UNITS``.
        default_unit: the unit of a number written without one (``"s"`` in BIDS sidecars).
        unit_name: the field's unit, as the warning shows it.
        large: ``(threshold, unit, reason)``: a number without unit above ``threshold`` is read
            in ``unit`` instead (a sidecar TR of 2300 is in ms, not seconds).
        plain_text: numbers come as text in this source (a TSV cell), so ``"45"`` is standard.
    """
    quantity = read_quantity(value)
    if quantity.number is None:
        if quantity.problem is not None:
            warn_metadata(f"{source}: {label} {shown(value)} {quantity.problem}; left out")
        return None
    if plain_text and not quantity.unit and isinstance(value, str):
        quantity = quantity._replace(problem=None)
    unit, reasons = quantity.unit, [quantity.problem] if quantity.problem else []
    if not unit:
        unit = default_unit
        if large is not None and quantity.number > large[0]:
            unit = large[1]
            reasons.append(large[2])
    factor = units.get(unit)
    if factor is None:
        warn_metadata(f"{source}: {label} {shown(value)} has an unknown unit {unit!r}; left out")
        return None
    # Rounding removes binary noise such as 0.00298 * 1000 = 2.9800000000000004.
    number = round(quantity.number * factor, 6)
    if not math.isfinite(number):
        warn_metadata(f"{source}: {label} {shown(value)} is not a finite number; left out")
        return None
    if reasons:
        reading = f"read as {number:g} {unit_name}"
        warn_metadata(f"{source}: {label} {shown(value)} {' and '.join(reasons)}; {reading}")
    return number


def read_manufacturer(value: Any, label: str, source: str) -> str | None:
    """The vendor name of a header, or ``None``; a name holding prompt separators (``"SonoSite,
    Inc."``) is read without them, since the prompt could not be parsed back otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        warn_metadata(f"{source}: {label} {shown(value)} is not text; left out")
        return None
    try:
        return canonical_manufacturer(value)
    except MetadataError:
        cleaned = " ".join(_PROMPT_SEPARATORS.sub(" ", value).split())
    try:
        reading = canonical_manufacturer(cleaned)
    except MetadataError:
        warn_metadata(f"{source}: {label} {shown(value)} is not a vendor name; left out")
        return None
    warn_metadata(f"{source}: {label} {shown(value)} holds prompt separators; read as {reading!r}")
    return reading


def _rejection(fields: Mapping[str, Any]) -> str | None:
    """Why ``ImagingMetadata`` refuses ``fields``, or ``None`` when it accepts them."""
    try:
        ImagingMetadata(**fields)
    except MetadataError as error:
        return str(error)
    return None


def usable_fields(
    fields: Mapping[str, Any], labels: Mapping[str, str], source: str
) -> dict[str, Any]:
    """The fields (not ``None``) that ``ImagingMetadata`` accepts one by one.

    The others (out of range, an unknown spelling) are left out with a warning naming the
    header field (``labels``) and the value: the record's checks decide what is usable, so the
    readers need not repeat them.
    """
    usable = {}
    for name, value in fields.items():
        if value is None:
            continue
        problem = _rejection({name: value})
        if problem is None:
            usable[name] = value
        else:
            label = labels.get(name, name)
            warn_metadata(f"{source}: {label} {shown(value)} is not usable ({problem}); left out")
    return usable


def lenient_metadata(
    fields: Mapping[str, Any], labels: Mapping[str, str], source: str
) -> ImagingMetadata:
    """``ImagingMetadata`` from header fields, leaving out (with a warning) what it rejects.

    Reading a header never fails for its content: fields rejected alone are left out first, then
    fields that do not fit together (TE >= TR). Which of those is wrong cannot be told, so every
    field whose removal alone would make the rest consistent is left out.
    """
    usable = usable_fields(fields, labels, source)
    while (problem := _rejection(usable)) is not None:
        culprits = [
            name
            for name in usable
            if _rejection({k: v for k, v in usable.items() if k != name}) is None
        ] or list(usable)
        names = " and ".join(labels.get(name, name) for name in culprits)
        warn_metadata(f"{source}: {names} do not fit together ({problem}); left out")
        usable = {k: v for k, v in usable.items() if k not in culprits}
    return ImagingMetadata(**usable)


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
    """
    root = Path(root)
    candidates = [*root.glob("sub-*/anat/*"), *root.glob("sub-*/ses-*/anat/*")]
    return sorted(
        path
        for path in candidates
        if not path.name.startswith(".")
        and path.name.lower().endswith((".nii", ".nii.gz"))
        and path.is_file()
    )
