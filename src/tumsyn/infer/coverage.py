"""What a model was trained on, and whether a prompt asks for something outside it.

Beyond the paper: a checkpoint records the metadata its training prompts covered (modalities,
field strengths, vendors, voxel sizes, TR/TE/TI per modality). A prompt outside that is still
answered, with a warning that the output is an extrapolation from what the model has seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tumsyn.metadata import ImagingMetadata, parse_prompt

__all__ = ["coverage_from_prompts", "coverage_warnings"]

# A timing is "far outside" when it lies beyond the trained range by more than this factor.
_TIMING_SLACK = 1.25
# Prompt fields that, left out ("None"), make a prompt unlike the training ones when every
# training prompt stated them. (TI and the like are legitimately None for many sequences.)
_SUBJECT_AND_SCANNER = ("age", "sex", "field_strength", "manufacturer")


def coverage_from_prompts(prompts: Iterable[str]) -> dict[str, Any]:
    """JSON-able summary of the metadata in a list of training prompts."""
    records = [parse_prompt(prompt) for prompt in prompts]
    timings: dict[str, dict[str, list[float]]] = {}
    for record in records:
        ranges = timings.setdefault(str(record.modality), {})
        for name in ("tr", "te", "ti"):
            value = getattr(record, name)
            if value is not None:
                low, high = ranges.get(name, [value, value])
                ranges[name] = [min(low, value), max(high, value)]
    sizes = [v for r in records if r.voxel_size for v in r.voxel_size]
    return {
        "modalities": sorted({str(r.modality) for r in records if r.modality}),
        "field_strengths": sorted({r.field_strength for r in records if r.field_strength}),
        "manufacturers": sorted({r.manufacturer for r in records if r.manufacturer}),
        "voxel_size": [min(sizes), max(sizes)] if sizes else None,
        "timings": timings,
        "always_stated": [
            name
            for name in _SUBJECT_AND_SCANNER
            if records and all(getattr(r, name) is not None for r in records)
        ],
    }


def coverage_warnings(metadata: ImagingMetadata, coverage: dict[str, Any]) -> list[str]:
    """One sentence per way in which ``metadata`` lies outside ``coverage``."""
    if not coverage:
        return []
    notes = [
        f"the prompt does not state {name.replace('_', ' ')} but every training prompt did "
        "(add it to the target)"
        for name in coverage.get("always_stated", [])
        if getattr(metadata, name) is None
    ]
    modality = metadata.modality
    if modality is not None and modality not in coverage["modalities"]:
        notes.append(f"modality {modality} was not in the training data")
    field = metadata.field_strength
    if field is not None and all(abs(field - f) > 0.1 for f in coverage["field_strengths"]):
        trained = ", ".join(f"{f:g}" for f in coverage["field_strengths"])
        notes.append(f"field strength {field:g} T was not trained (trained: {trained} T)")
    vendor = metadata.manufacturer
    if vendor is not None and vendor not in coverage["manufacturers"]:
        notes.append(f"manufacturer {vendor} was not in the training data")
    sizes = coverage.get("voxel_size")
    if metadata.voxel_size is not None and sizes is not None:
        low, high = sizes
        if any(v < low - 1e-6 or v > high + 1e-6 for v in metadata.voxel_size):
            notes.append(
                f"voxel size {metadata.voxel_size} mm is outside the trained {low:g}-{high:g} mm"
            )
    for name, (low, high) in coverage["timings"].get(str(modality), {}).items():
        value = getattr(metadata, name)
        if value is not None and not low / _TIMING_SLACK <= value <= high * _TIMING_SLACK:
            notes.append(
                f"{name.upper()} {value:g} ms is far outside the trained {low:g}-{high:g} ms "
                f"for {modality}"
            )
    return notes
