"""The TUMSyn prompt: ``ImagingMetadata`` <-> the exact text the text encoder was trained on.

Format (paper and official prompt files), fields separated by ``"; "``, unknown values ``None``::

    Age: 16; Gender: F; Scanner: 3.0 Siemens; Modality: T2w; Voxel size: (0.8, 0.8, 0.8);
    Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree): (3200.0, 563.0, None, T2var)

(one line in reality). Numbers print as Python floats (``3.0``, ``2.98``); a whole-number age prints
without decimals (``Age: 16``), as in the official files. The parser is lenient where the official
files are inconsistent (extra spaces, field order, label case) and strict about content: every
field must be present once, and a malformed value is reported with its field name.
"""

from __future__ import annotations

import dataclasses
import re

from tumsyn.errors import PromptParseError
from tumsyn.metadata.record import ImagingMetadata

__all__ = [
    "PARAMETERS_LABEL",
    "format_prompt",
    "parse_prompt",
    "prompt_voxel_size",
    "prompt_without_subject",
]

PARAMETERS_LABEL = "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree)"
_LABELS = ("Age", "Gender", "Scanner", "Modality", "Voxel size", PARAMETERS_LABEL)
_NONE = "None"


def _number(value: float | None) -> str:
    return _NONE if value is None else repr(float(value))


def _age(value: float | None) -> str:
    if value is None:
        return _NONE
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def prompt_voxel_size(voxel_size: tuple[float, float, float]) -> tuple[float, float, float]:
    """Voxel sizes rounded to 0.01 mm for a prompt.

    Header values such as 0.46875 cost one token per digit, and the paper's prompts never use more
    than two decimals; without rounding, prompts from real headers overflow the 90-token context.
    """
    return tuple(round(float(v), 2) for v in voxel_size)  # type: ignore[return-value]


def format_prompt(metadata: ImagingMetadata) -> str:
    """The prompt text for ``metadata``; ``parse_prompt(format_prompt(m)) == m``.

    Example:
        >>> format_prompt(ImagingMetadata(age=70, sex="F", modality="FLAIR"))[:44]
        'Age: 70; Gender: F; Scanner: None None; Moda'
    """
    m = metadata
    voxel = _NONE if m.voxel_size is None else f"({', '.join(map(_number, m.voxel_size))})"
    flip = m.flip_angle if isinstance(m.flip_angle, str) else _number(m.flip_angle)
    values = (
        _age(m.age),
        m.sex or _NONE,
        f"{_number(m.field_strength)} {m.manufacturer or _NONE}",
        m.modality or _NONE,
        voxel,
        f"({_number(m.tr)}, {_number(m.te)}, {_number(m.ti)}, {flip})",
    )
    return "; ".join(f"{label}: {value}" for label, value in zip(_LABELS, values, strict=True))


def parse_prompt(text: str) -> ImagingMetadata:
    """The ``ImagingMetadata`` a prompt describes.

    Raises:
        PromptParseError: a field is missing, repeated, unknown, or its value is malformed; the
            message names the field.
        MetadataError: the values parse but are invalid (unknown modality, TE >= TR...).
    """
    if not isinstance(text, str) or not text.strip():
        raise PromptParseError("prompt is empty: expected 'Age: ...; Gender: ...; ...'")
    fields = _split_fields(text)
    age = _parse_number(fields["Age"], "Age")
    sex = _parse_word(fields["Gender"])
    field_strength, manufacturer = _parse_scanner(fields["Scanner"])
    modality = _parse_word(fields["Modality"])
    voxel_size = _parse_voxel_size(fields["Voxel size"])
    tr, te, ti, flip_angle = _parse_parameters(fields[PARAMETERS_LABEL])
    return ImagingMetadata(
        age=age,
        sex=sex,
        field_strength=field_strength,
        manufacturer=manufacturer,
        modality=modality,
        voxel_size=voxel_size,
        tr=tr,
        te=te,
        ti=ti,
        flip_angle=flip_angle,
    )


def _split_fields(text: str) -> dict[str, str]:
    by_key = {_label_key(label): label for label in _LABELS}
    fields: dict[str, str] = {}
    for part in text.strip().rstrip(";").split(";"):
        label, colon, value = part.partition(":")
        if not colon:
            raise PromptParseError(f"prompt part {part.strip()!r} has no 'Label: value' form")
        canonical = by_key.get(_label_key(label))
        if canonical is None:
            raise PromptParseError(
                f"prompt has an unknown field {label.strip()!r}: expected the fields "
                f"{', '.join(repr(lab) for lab in _LABELS)}"
            )
        if canonical in fields:
            raise PromptParseError(f"prompt field {canonical!r} appears more than once")
        fields[canonical] = value.strip()
    missing = [label for label in _LABELS if label not in fields]
    if missing:
        raise PromptParseError(
            f"prompt lacks the field(s) {', '.join(repr(m) for m in missing)}: write None for an "
            "unknown value"
        )
    return fields


def _label_key(label: str) -> str:
    return " ".join(label.split()).lower()


def _parse_number(value: str, field: str) -> float | None:
    if value == _NONE:
        return None
    try:
        return float(value)
    except ValueError:
        raise PromptParseError(
            f"prompt field {field!r}: expected a number or None, got {value!r}"
        ) from None


def _parse_word(value: str) -> str | None:
    return None if value == _NONE else value


def _parse_scanner(value: str) -> tuple[float | None, str | None]:
    strength, _, manufacturer = value.partition(" ")
    if not manufacturer.strip():
        if value == _NONE:
            return None, None
        raise PromptParseError(
            "prompt field 'Scanner': expected '<field strength in T> <manufacturer>' such as "
            f"'3.0 Siemens', got {value!r}"
        )
    return _parse_number(strength, "Scanner"), _parse_word(manufacturer.strip())


def _parse_tuple(value: str, field: str, size: int, example: str) -> list[str]:
    match = re.fullmatch(r"\((.*)\)", value)
    items = [item.strip() for item in match.group(1).split(",")] if match else []
    if len(items) != size:
        raise PromptParseError(
            f"prompt field {field!r}: expected {size} values in parentheses such as {example}, "
            f"got {value!r}"
        )
    return items


def _parse_voxel_size(value: str) -> tuple[float, float, float] | None:
    if value == _NONE:
        return None
    items = _parse_tuple(value, "Voxel size", 3, "(1.0, 1.0, 3.0)")
    sizes = [_parse_number(item, "Voxel size") for item in items]
    if None in sizes:
        raise PromptParseError(
            f"prompt field 'Voxel size': give all three sizes or None, got {value!r}"
        )
    return tuple(sizes)  # type: ignore[return-value]


def _parse_parameters(
    value: str,
) -> tuple[float | None, float | None, float | None, float | str | None]:
    items = _parse_tuple(value, PARAMETERS_LABEL, 4, "(9000.0, 81.0, 2500.0, 150.0)")
    tr, te, ti = (_parse_number(items[i], name) for i, name in enumerate(("TR", "TE", "TI")))
    flip = items[3]
    if flip == _NONE:
        return tr, te, ti, None
    try:
        return tr, te, ti, float(flip)
    except ValueError:
        return tr, te, ti, flip  # a word such as T2var; validated by ImagingMetadata


def prompt_without_subject(text: str) -> str:
    """``text`` with age and sex left out (``None``): what a user who knows neither writes.

    Example:
        >>> full = format_prompt(ImagingMetadata(age=70, sex="F", modality="T2w"))
        >>> prompt_without_subject(full)[:27]
        'Age: None; Gender: None; Sc'
    """
    # dataclasses.replace, since ImagingMetadata.replace takes None for "keep this value".
    return format_prompt(dataclasses.replace(parse_prompt(text), age=None, sex=None))
