"""Metadata from a DICOM header (read with pydicom, pixel data skipped).

DICOM already gives times in ms. It has no field naming the contrast, so the modality is guessed
from the series description and protocol name and may be ``None``: pass it explicitly then.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tumsyn.errors import ImageError, InputFileError, MetadataError
from tumsyn.metadata.record import ImagingMetadata

__all__ = ["metadata_from_dicom", "parse_dicom_age"]

_AGE_UNITS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
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
    """Years from a DICOM age string: ``"034Y"`` -> 34.0, ``"006M"`` -> 0.5."""
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY])\s*", str(value).upper())
    if not match:
        raise MetadataError(f"DICOM PatientAge {value!r} is not of the form nnnY/M/W/D")
    return round(int(match.group(1)) * _AGE_UNITS[match.group(2)], 2)


def _guess_modality(header: Any) -> str | None:
    text = " ".join(
        str(getattr(header, keyword, "") or "")
        for keyword in ("SeriesDescription", "ProtocolName", "SequenceName")
    ).lower()
    for pattern, modality in _DESCRIPTION_PATTERNS:
        if re.search(pattern, text):
            contrast = str(getattr(header, "ContrastBolusAgent", "") or "").strip()
            return "T1CE" if modality == "T1w" and contrast else modality
    return None


def _number(header: Any, keyword: str) -> float | None:
    value = getattr(header, keyword, None)
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"DICOM {keyword} {value!r} is not a number") from None


def metadata_from_dicom(path: str | os.PathLike) -> ImagingMetadata:
    """``ImagingMetadata`` from one DICOM file of a series.

    Voxel size is (column spacing, row spacing, slice thickness), i.e. along the image's x, y
    and slice axes.
    """
    import pydicom  # imported here so that `import tumsyn.metadata` stays cheap
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such DICOM file")
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError) as error:
        raise ImageError(f"{path}: not a readable DICOM file ({error})") from None

    spacing = getattr(header, "PixelSpacing", None)
    thickness = _number(header, "SliceThickness")
    voxel_size = None
    if spacing is not None and len(spacing) == 2 and thickness is not None:
        voxel_size = (float(spacing[1]), float(spacing[0]), thickness)
    age = getattr(header, "PatientAge", None)
    sex = str(getattr(header, "PatientSex", "") or "").strip().upper()
    fields = {
        "age": parse_dicom_age(age) if age else None,
        "sex": sex if sex in ("F", "M") else None,
        "field_strength": _number(header, "MagneticFieldStrength"),
        "manufacturer": str(getattr(header, "Manufacturer", "") or "").strip() or None,
        "modality": _guess_modality(header),
        "voxel_size": voxel_size,
        "tr": _number(header, "RepetitionTime"),
        "te": _number(header, "EchoTime"),
        "ti": _number(header, "InversionTime"),
        "flip_angle": _number(header, "FlipAngle"),
    }
    try:
        return ImagingMetadata(**fields)
    except MetadataError as error:
        raise MetadataError(f"{path}: {error}") from None
