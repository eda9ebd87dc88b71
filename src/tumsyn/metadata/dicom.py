"""Metadata from a DICOM header (read with pydicom, pixel data skipped).

DICOM already gives times in ms. It has no field naming the contrast, so the modality is guessed
from the series description and protocol name and may be ``None``: pass it explicitly then.

Scanners and anonymisers write many elements against the standard (an age ``"99"`` without unit,
a TR ``"2300 ms"``, a sex ``"female"``). Every such value is read as well as it can be, or left
out, with a :class:`~tumsyn.errors.MetadataWarning` naming the file, the element and the value:
only a file that is not DICOM at all makes the reading fail.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tumsyn.errors import ImageError, InputFileError, MetadataError
from tumsyn.metadata.lenient import (
    DEGREE_UNITS,
    GAUSS_IN_TESLA,
    MM_UNITS,
    MS_UNITS,
    TESLA_UNITS,
    YEAR_UNITS,
    lenient_metadata,
    read_manufacturer,
    read_number,
    read_quantity,
    shown,
    warn_metadata,
)
from tumsyn.metadata.record import ImagingMetadata, canonical_sex

__all__ = ["metadata_from_dicom", "parse_dicom_age"]

# The standard's age string: three digits and a unit letter ("034Y").
_STANDARD_AGE = re.compile(r"\d{3}[DWMY]", re.ASCII)
# Numeric elements: (ImagingMetadata field, units, unit of a bare number, unit name, large) as
# `read_number` takes them.
_NUMBERS: dict[str, tuple[str, dict[str, float], str, str, tuple[float, str, str] | None]] = {
    "RepetitionTime": ("tr", MS_UNITS, "ms", "ms", None),
    "EchoTime": ("te", MS_UNITS, "ms", "ms", None),
    "InversionTime": ("ti", MS_UNITS, "ms", "ms", None),
    "FlipAngle": ("flip_angle", DEGREE_UNITS, "deg", "degrees", None),
    "MagneticFieldStrength": ("field_strength", TESLA_UNITS, "t", "T", GAUSS_IN_TESLA),
}
_TEXT_KEYWORDS = (
    "PatientAge",
    "PatientSex",
    "Manufacturer",
    "SeriesDescription",
    "ProtocolName",
    "SequenceName",
    "ContrastBolusAgent",
    "PixelSpacing",
    "SliceThickness",
)
# The element (or source) each ImagingMetadata field comes from, as warnings name it.
_LABELS = {
    **{field: f"DICOM {keyword}" for keyword, (field, *_) in _NUMBERS.items()},
    "age": "DICOM PatientAge",
    "sex": "DICOM PatientSex",
    "manufacturer": "DICOM Manufacturer",
    "modality": "modality guessed from the SeriesDescription",
    "voxel_size": "voxel size from DICOM PixelSpacing and SliceThickness",
}
# Searched in order in the series description + protocol name; first hit wins, so the more
# specific names come first (FLAIR is also "T2", SWI is also a gradient echo).
_DESCRIPTION_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"flair|dark.?fluid", "FLAIR"),
    (r"\bswi|susc", "SWI"),
    (r"t2\*|t2star|t2_star|\bt2s\b|hemo", "T2star"),
    (r"\bpd|proton", "PD"),
    (r"t2", "T2w"),
    (r"t1|mprage|mp-rage|spgr|bravo|tfe", "T1w"),
)


def parse_dicom_age(value: str) -> float:
    """Years from a DICOM age string: ``"034Y"`` -> 34.0, ``"006M"`` -> 0.5.

    Non-standard forms are read too, since anonymisers write them: ``"45 Y"``, ``"45Y"``, and a
    bare number (``"99"``, ``"045"``) as years.

    Raises:
        MetadataError: no age can be read from ``value``.
    """
    quantity = read_quantity(value if isinstance(value, str) else None)
    factor = YEAR_UNITS.get(quantity.unit or "y")
    if quantity.number is None or factor is None:
        raise MetadataError(f"DICOM PatientAge {value!r} is not of the form nnnY/M/W/D")
    return round(quantity.number * factor, 2)


def _is_blank(value: Any) -> bool:
    """Whether an element is absent or empty, which is no reason for a warning."""
    return value is None or (isinstance(value, str) and not value.strip())


def _age(value: Any, source: str) -> float | None:
    """Years from PatientAge; a non-standard form is read with a warning saying how."""
    if _is_blank(value):
        return None
    label = f"{source}: DICOM PatientAge {shown(value)}"
    try:
        years = parse_dicom_age(value)
    except MetadataError:
        warn_metadata(f"{label} is not an age; left out")
        return None
    if not _STANDARD_AGE.fullmatch(value):
        why = "is not of the form nnnY/M/W/D" if read_quantity(value).unit else "has no unit"
        warn_metadata(f"{label} {why}; read as {years:g} years")
    return years


def _sex(value: Any, source: str) -> str | None:
    """``F`` or ``M``; other (``O``) cannot be said in a prompt and is left out with a warning,
    as is anything unreadable; ``"female"`` and the like are read with one."""
    if _is_blank(value):
        return None
    text = value.strip().upper() if isinstance(value, str) else ""
    if text in ("F", "M"):
        return text
    label = f"{source}: DICOM PatientSex {shown(value)}"
    if text == "O":
        warn_metadata(f"{label} (other) cannot be said in a prompt (F or M only); left out")
        return None
    try:
        reading = canonical_sex(value) if isinstance(value, str) else None
    except MetadataError:
        reading = None
    if reading is None:
        warn_metadata(f"{label} is not F, M or O; left out")
    else:
        warn_metadata(f"{label} is not F, M or O; read as {reading}")
    return reading


def _millimetres(value: Any, label: str, source: str) -> float | None:
    """A length in mm, as DICOM gives spacings and thicknesses."""
    return read_number(value, label, source, units=MM_UNITS, default_unit="mm", unit_name="mm")


def _voxel_size(values: Mapping[str, Any], source: str) -> tuple[float, float, float] | None:
    """(column spacing, row spacing, slice thickness): along the image's x, y and slice axes.

    Any part unreadable (warned about) or missing leaves the whole voxel size out, since a prompt
    needs all three. A missing SliceThickness is no warning: 2D images (CR, secondary captures)
    have none.
    """
    spacing = values.get("PixelSpacing")
    thickness = _millimetres(values.get("SliceThickness"), "DICOM SliceThickness", source)
    if _is_blank(spacing):
        return None
    if isinstance(spacing, (str, bytes)) or not isinstance(spacing, Sequence) or len(spacing) != 2:
        label = f"{source}: DICOM PixelSpacing {shown(spacing)}"
        warn_metadata(f"{label} is not two numbers; voxel size left out")
        return None
    rows, columns = (_millimetres(v, "DICOM PixelSpacing", source) for v in spacing)
    if rows is None or columns is None or thickness is None:
        return None
    return (columns, rows, thickness)


def _guess_modality(values: Mapping[str, Any]) -> str | None:
    """The modality named in the series description, protocol or sequence name, if any."""
    text = " ".join(
        str(values.get(keyword) or "")
        for keyword in ("SeriesDescription", "ProtocolName", "SequenceName")
    ).lower()
    for pattern, modality in _DESCRIPTION_PATTERNS:
        if re.search(pattern, text):
            contrast = str(values.get("ContrastBolusAgent") or "").strip()
            return "T1CE" if modality == "T1w" and contrast else modality
    return None


def _element(header: Any, keyword: str, source: str) -> Any:
    """One element's value; ``None`` when absent, or undecodable (then with a warning)."""
    try:
        return getattr(header, keyword, None)
    except Exception as error:  # pydicom's errors for a corrupt element are of many types
        message = f"DICOM {keyword} cannot be decoded ({type(error).__name__}); left out"
        warn_metadata(f"{source}: {message}")
        return None


def _read_header(path: Path) -> dict[str, Any]:
    """The values of the elements tumsyn uses, by keyword.

    pydicom's own warnings about non-conforming values are silenced: each such value gets
    tumsyn's warning instead, which names the file and says how the value was read. Values are
    decoded here, inside that silence, because pydicom decodes an element on first access.
    """
    import pydicom  # imported here so that `import tumsyn.metadata` stays cheap

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="pydicom")
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as error:  # corrupt files raise many types, not only InvalidDicomError
            raise ImageError(f"{path}: not a readable DICOM file ({error})") from None
        keywords = (*_NUMBERS, *_TEXT_KEYWORDS)
        return {keyword: _element(header, keyword, str(path)) for keyword in keywords}


def metadata_from_dicom(path: str | os.PathLike) -> ImagingMetadata:
    """``ImagingMetadata`` from one DICOM file of a series.

    Voxel size is (column spacing, row spacing, slice thickness), i.e. along the image's x, y
    and slice axes. Elements that are missing stay ``None``; elements against the standard are
    read as well as they can be or left out, each with a ``MetadataWarning``.

    Raises:
        InputFileError: there is no such file.
        ImageError: the file is not DICOM (or too corrupt for pydicom to read).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such DICOM file")
    values = _read_header(path)
    source = str(path)
    fields: dict[str, Any] = {
        field: read_number(
            values[keyword],
            f"DICOM {keyword}",
            source,
            units=units,
            default_unit=default_unit,
            unit_name=unit_name,
            large=large,
        )
        for keyword, (field, units, default_unit, unit_name, large) in _NUMBERS.items()
    }
    fields["age"] = _age(values["PatientAge"], source)
    fields["sex"] = _sex(values["PatientSex"], source)
    fields["manufacturer"] = read_manufacturer(values["Manufacturer"], "DICOM Manufacturer", source)
    fields["modality"] = _guess_modality(values)
    fields["voxel_size"] = _voxel_size(values, source)
    return lenient_metadata(fields, _LABELS, source)
