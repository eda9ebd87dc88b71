"""Tissue contrast of a protocol, and the ranges that real images of its sequence family show.

A model trained on simulated images learns their contrasts; if the simulator's FLAIR has grey
matter darker than white matter, so will the model's FLAIR. This module states what real images
look like (``contrast_ranges.yaml``: pure-tissue GM/WM and CSF/WM intensity ratios per sequence
family and field strength, with the textbook ordering and the sources, discussed in
``docs/calibration.md``) and measures the simulator against it. The ratios are those of *pure*
voxels, so they come straight from the signal equations (:func:`pure_tissue_ratios`); rendered
images add partial volume and noise, not contrast.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise

import numpy as np

from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate.sequences import sequence_for, signal
from tumsyn.simulate.tissues import TISSUES, tissue_properties
from tumsyn.yamlfiles import read_yaml

__all__ = [
    "ContrastRange",
    "contrast_family",
    "contrast_problems",
    "contrast_ranges",
    "expected_contrast",
    "in_textbook_order",
    "pure_tissue_ratios",
    "ratio_problems",
    "textbook_order",
    "tissue_signals",
]

_RANGES_FILE = "contrast_ranges.yaml"
#: Gadolinium in enhancing lesions for T1CE checks: the middle of the simulator's draw (0.2-0.6 mM
#: in ``anatomy.draw_anatomy``).
TYPICAL_GADOLINIUM_MM = 0.4


def contrast_family(metadata: ImagingMetadata) -> str:
    """The sequence family whose real images a protocol should resemble, e.g. ``FLAIR-vfa``.

    ``vfa``: a 3D variable-flip-angle TSE (flip angle ``T2var``); ``tse``: a 2D turbo spin echo;
    T1w by its sequence (``mprage``, ``gre``, ``se``, ``ir``); T1CE as the T1w family it is.
    """
    sequence = sequence_for(metadata)
    modality = str(metadata.modality)
    if modality in ("T1w", "T1CE"):
        short = {"mprage": "mprage", "spoiled_gradient_echo": "gre", "spin_echo": "se"}
        return f"T1w-{short.get(sequence, 'ir')}"
    if modality in ("T2w", "FLAIR", "PD"):
        return f"{modality}-{'vfa' if metadata.flip_angle == 'T2var' else 'tse'}"
    return {"T2star": "T2star-gre", "SWI": "SWI"}[modality]


def tissue_signals(metadata: ImagingMetadata) -> dict[str, float]:
    """Magnitude signal of each pure tissue class under a protocol (tabulated properties; for
    T1CE with :data:`TYPICAL_GADOLINIUM_MM` in enhancing lesions)."""
    dose = TYPICAL_GADOLINIUM_MM if str(metadata.modality) == "T1CE" else 0.0
    properties = tissue_properties(metadata.field_strength, gadolinium_mm=dose)
    values = np.abs(signal(properties, metadata))
    return dict(zip(TISSUES, (float(v) for v in values), strict=True))


def pure_tissue_ratios(metadata: ImagingMetadata) -> dict[str, float]:
    """``{"GM/WM", "CSF/WM", "VEIN/WM"}`` of pure-tissue intensities under a protocol."""
    signals = tissue_signals(metadata)
    return {f"{t}/WM": signals[t] / signals["WM"] for t in ("GM", "CSF", "VEIN")}


@dataclass(frozen=True)
class ContrastRange:
    """What real images of one sequence family at one field strength show."""

    family: str
    field_strength: float
    gm_wm: tuple[float, float]
    csf_wm: tuple[float, float]
    order: tuple[str, ...]  # tissues from brightest to darkest, e.g. ("GM", "WM", "CSF")
    vein_wm: tuple[float, float] | None  # where veins must be darker than GM and WM (SWI)
    evidence: str  # measured, derived or estimate (see contrast_ranges.yaml)
    source: str

    @property
    def enforced(self) -> bool:
        """Whether the ranges (not only the ordering) are known well enough to hold to."""
        return self.evidence in ("measured", "derived")


@cache
def contrast_ranges() -> dict[tuple[str, float], ContrastRange]:
    """The packaged table, by (family, field strength)."""
    path = resources.files("tumsyn.simulate") / _RANGES_FILE
    with resources.as_file(path) as file:
        content = read_yaml(file, missing="the packaged contrast table is missing")
    table = {}
    for entry in content["ranges"]:
        for field in entry["field_strengths"]:
            table[(entry["family"], float(field))] = ContrastRange(
                family=entry["family"],
                field_strength=float(field),
                gm_wm=tuple(entry["gm_wm"]),
                csf_wm=tuple(entry["csf_wm"]),
                order=tuple(entry["order"]),
                vein_wm=tuple(entry["vein_wm"]) if "vein_wm" in entry else None,
                evidence=entry["evidence"],
                source=entry["source"],
            )
    return table


def ratio_problems(
    expected: ContrastRange, ratios: dict[str, float], *, ranges: bool = True
) -> list[str]:
    """How measured ``{"GM/WM", "CSF/WM"}`` ratios (and ``"VEIN/WM"`` where known) depart from
    ``expected`` (empty: none): the ordering always, the ranges when ``ranges``. Used for the
    simulator's own signals and for images (synthesized or real) alike."""
    bands = [("GM/WM", expected.gm_wm), ("CSF/WM", expected.csf_wm)]
    veins = expected.vein_wm is not None and "VEIN/WM" in ratios
    if veins:
        bands.append(("VEIN/WM", expected.vein_wm))
    problems = []
    if ranges:
        for name, (low, high) in bands:
            if not low <= ratios[name] <= high:
                problems.append(f"{name} {ratios[name]:.2f} outside [{low:g}, {high:g}]")
    if veins and not ratios["VEIN/WM"] < min(1.0, ratios["GM/WM"]):
        problems.append("veins are not darker than grey and white matter")
    brightness = {"WM": 1.0, "GM": ratios["GM/WM"], "CSF": ratios["CSF/WM"]}
    if not _in_order(brightness, expected.order):
        actual = sorted(expected.order, key=lambda t: -brightness[t])
        problems.append(f"order {' > '.join(actual)}, expected {' > '.join(expected.order)}")
    return problems


def _in_order(brightness: dict[str, float], order: tuple[str, ...]) -> bool:
    return all(brightness[a] > brightness[b] for a, b in pairwise(order))


def textbook_order(metadata: ImagingMetadata) -> tuple[str, ...]:
    """Tissues from brightest to darkest in real images of the protocol's sequence family, at
    any field strength (the table's order does not depend on it); empty where it states none
    (SWI) or has no entry for the family."""
    family = contrast_family(metadata)
    return next((r.order for r in contrast_ranges().values() if r.family == family), ())


def in_textbook_order(metadata: ImagingMetadata) -> bool:
    """Whether a protocol's pure-tissue signals (tabulated properties) are in its family's
    :func:`textbook_order`: a T1-weighted gradient echo at a 4 degree flip angle is not."""
    return _in_order(tissue_signals(metadata), textbook_order(metadata))


def expected_contrast(metadata: ImagingMetadata) -> ContrastRange:
    """The table's entry for a protocol's family and field strength.

    Raises:
        KeyError: the table has none.
    """
    return contrast_ranges()[(contrast_family(metadata), float(metadata.field_strength))]


def contrast_problems(metadata: ImagingMetadata, *, estimates: bool = False) -> list[str]:
    """How a protocol's simulated contrast departs from real images of its family (empty: none).

    The ordering is always checked; the ratio ranges where they are measured or derived, and
    with ``estimates`` also where the table only has a plausibility band.

    Raises:
        KeyError: the table has no range for the protocol's family and field strength.
    """
    expected = expected_contrast(metadata)
    checked = expected.enforced or estimates
    problems = ratio_problems(expected, pure_tissue_ratios(metadata), ranges=checked)
    if str(metadata.modality) == "T1CE":
        signals = tissue_signals(metadata)
        if signals["ENH"] <= signals["WM"]:
            problems.append("enhancing lesions are not brighter than white matter")
    return problems
