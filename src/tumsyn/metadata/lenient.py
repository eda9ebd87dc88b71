"""Optional header values read as well as they can be, with a warning about the rest.

BIDS sidecars, ``participants.tsv`` files and DICOM headers break their standards in the same
ways: a TR of ``"2300 ms"`` where a number is due, a field strength of ``15000`` (gauss), an age of
``"45Y"`` or ``"90+"``, a vendor ``"SonoSite, Inc."`` whose comma a prompt cannot carry. The
readers of those formats share the helpers here so that every such value is handled alike: read
(with a :class:`~tumsyn.errors.MetadataWarning` saying how) or left out (with one saying why),
never an error, since an optional header field must not stop the indexing of a data set.
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from tumsyn.errors import MetadataError, MetadataWarning
from tumsyn.metadata.record import ImagingMetadata, canonical_manufacturer

__all__ = [
    "DEGREE_UNITS",
    "GAUSS_IN_TESLA",
    "MM_UNITS",
    "MS_UNITS",
    "TESLA_UNITS",
    "YEAR_UNITS",
    "Quantity",
    "lenient_metadata",
    "read_manufacturer",
    "read_number",
    "read_quantity",
    "shown",
    "usable_fields",
    "warn_metadata",
]


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
# No scanner has 100 T or more: such a field strength is in gauss (older GE headers: 15000). As
# `read_number`'s ``large``: (threshold, unit to read it in, the reason a warning gives).
GAUSS_IN_TESLA = (100.0, "g", "looks like gauss")
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
