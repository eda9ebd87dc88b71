"""``ImagingMetadata``: the typed record that a TUMSyn prompt serialises.

Everything the text encoder is told about an image lives here, in fixed units (ms, T, mm,
degrees, years), validated once when the record is made. Readers (BIDS sidecars, DICOM, command-line
flags, prompt text) produce it; the prompt formatter consumes it. Because every reader goes through
the same constructor, a TR given in seconds or an unknown modality is caught the same way wherever
it came from.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import Any

from tumsyn.errors import MetadataError
from tumsyn.metadata.modalities import canonical_modality

__all__ = ["LIMITS", "ImagingMetadata", "canonical_manufacturer", "canonical_sex"]

# Accepted ranges (low exclusive unless 0 is meaningful, high inclusive). Wider than any real
# protocol, narrow enough to catch unit mistakes (a TR in microseconds, a voxel size in µm).
LIMITS: dict[str, tuple[float, float, str]] = {
    "age": (0.0, 120.0, "years"),
    "field_strength": (0.0, 12.0, "T"),
    "voxel_size": (0.05, 10.0, "mm"),  # 0.05 mm and below: microns typed as mm
    "tr": (0.0, 30000.0, "ms"),
    "te": (0.0, 30000.0, "ms"),
    "ti": (0.0, 30000.0, "ms"),
    "flip_angle": (0.0, 180.0, "degrees"),
}

_MANUFACTURERS: dict[str, str] = {
    "siemens": "Siemens",
    "philips": "Philips",
    "ge": "GE",
    "general electric": "GE",
    "toshiba": "Toshiba",
    "canon": "Canon",
    "hitachi": "Hitachi",
    "uih": "UIH",
    "united imaging": "UIH",
}
_SEXES: dict[str, str] = {"f": "F", "female": "F", "m": "M", "male": "M"}
# A flip-angle word such as "T2var" (variable flip angle 3D TSE) and a manufacturer must not
# contain the prompt's own separators, or the prompt could not be parsed back.
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]*")
_PROMPT_SEPARATORS = re.compile(r"[;:(),\"\n\r\t]")


def canonical_manufacturer(name: str) -> str:
    """A vendor as prompts spell it: ``"SIEMENS"``, ``"Siemens Healthineers"`` -> ``"Siemens"``.

    Unknown vendors are kept as given (whitespace collapsed).
    """
    if not isinstance(name, str):
        raise MetadataError(f"manufacturer must be text such as 'Siemens', got {name!r}")
    cleaned = " ".join(name.split())
    lowered = re.sub(r"[^a-z0-9 ]", " ", cleaned.lower())
    for key, canonical in _MANUFACTURERS.items():
        if lowered == key or lowered.startswith(key + " "):
            return canonical
    if not cleaned or cleaned.lower() == "none" or _PROMPT_SEPARATORS.search(cleaned):
        raise MetadataError(
            f"manufacturer {name!r} is not usable in a prompt: give a vendor name such as "
            "Siemens, Philips or GE, without ; : ( ) , or quotes"
        )
    return cleaned


def canonical_sex(value: str) -> str:
    """``"F"`` or ``"M"`` from the usual spellings (``female``, ``m``...)."""
    canonical = _SEXES.get(str(value).strip().lower())
    if canonical is None:
        raise MetadataError(f"sex {value!r} is not understood: use F or M (or leave it out)")
    return canonical


def _checked_number(field: str, value: Any) -> float:
    low, high, unit = LIMITS[field]
    try:
        if isinstance(value, bool):  # float(True) == 1.0 would hide a programming mistake
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        raise MetadataError(f"{field} must be a number in {unit}, got {value!r}") from None
    lowest_allowed_is_zero = field == "age"
    too_low = value < low if lowest_allowed_is_zero else value <= low
    if not math.isfinite(value) or too_low or value > high:
        bound = "[" if lowest_allowed_is_zero else "("
        raise MetadataError(
            f"{field} {value!r} {unit} is out of range {bound}{low:g}, {high:g}] {unit}"
            + (": give times in milliseconds" if unit == "ms" else "")
        )
    return value


@dataclass(frozen=True)
class ImagingMetadata:
    """What a TUMSyn prompt says about an image. Every field may be ``None`` (unknown).

    Values are validated and canonicalised on construction (modality and vendor spellings, units
    as below), so two records describing the same acquisition compare equal.

    Args:
        age: subject age in years, 0-120.
        sex: ``"F"`` or ``"M"`` (``female``/``male`` accepted). The prompt calls it "Gender".
        field_strength: main field in tesla, e.g. 3.0.
        manufacturer: scanner vendor, e.g. ``"Siemens"`` (``"SIEMENS"`` is mapped to it).
        modality: one of ``MODALITIES`` or an alias (``PDw``, ``T2starw``, ``flair``...).
        voxel_size: three voxel edge lengths in mm along the image axes.
        tr: repetition time in ms.
        te: echo time in ms; must be shorter than ``tr``.
        ti: inversion time in ms.
        flip_angle: degrees, or a word for sequences without one flip angle (``"T2var"``:
            variable-flip-angle 3D turbo spin echo).

    Example:
        >>> ImagingMetadata(modality="flair", tr=9000, te=81, ti=2500).modality
        'FLAIR'
    """

    age: float | None = None
    sex: str | None = None
    field_strength: float | None = None
    manufacturer: str | None = None
    modality: str | None = None
    voxel_size: tuple[float, float, float] | None = None
    tr: float | None = None
    te: float | None = None
    ti: float | None = None
    flip_angle: float | str | None = None

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {}
        for field in ("age", "field_strength", "tr", "te", "ti"):
            value = getattr(self, field)
            clean[field] = None if value is None else _checked_number(field, value)
        clean["sex"] = None if self.sex is None else canonical_sex(self.sex)
        clean["manufacturer"] = (
            None if self.manufacturer is None else canonical_manufacturer(self.manufacturer)
        )
        clean["modality"] = None if self.modality is None else canonical_modality(self.modality)
        clean["voxel_size"] = None if self.voxel_size is None else self._checked_voxel_size()
        clean["flip_angle"] = None if self.flip_angle is None else self._checked_flip_angle()
        if clean["te"] is not None and clean["tr"] is not None and clean["te"] >= clean["tr"]:
            raise MetadataError(f"TE {clean['te']:g} ms must be shorter than TR {clean['tr']:g} ms")
        for field, value in clean.items():
            object.__setattr__(self, field, value)

    def _checked_voxel_size(self) -> tuple[float, float, float]:
        size = self.voxel_size
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 3:
            raise MetadataError(f"voxel_size must be three numbers in mm, got {size!r}")
        return tuple(_checked_number("voxel_size", v) for v in size)  # type: ignore[return-value]

    def _checked_flip_angle(self) -> float | str:
        angle = self.flip_angle
        if isinstance(angle, str) and not _looks_numeric(angle):
            if not _WORD.fullmatch(angle) or angle.lower() == "none":
                raise MetadataError(
                    f"flip angle {angle!r} must be a number of degrees or a single word such as "
                    "T2var"
                )
            return angle
        return _checked_number("flip_angle", angle)

    def replace(self, **changes: Any) -> ImagingMetadata:
        """A copy with some fields changed; ``None`` values in ``changes`` are ignored.

        This is how sources are layered: a sidecar, then command-line flags on top.
        """
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
