"""Physics-based brain MRI simulator: virtual subjects, any protocol, exact ground truth.

Example:
    >>> from tumsyn.metadata import ImagingMetadata
    >>> from tumsyn.simulate import make_subject, render
    >>> subject = make_subject(seed=0)
    >>> flair = ImagingMetadata(modality="FLAIR", field_strength=3, tr=9000, te=81, ti=2500,
    ...                         flip_angle=150, voxel_size=(1, 1, 3))
    >>> image, affine = render(subject, flair)  # noise-free truth at 1 x 1 x 3 mm
"""

from tumsyn.simulate.anatomy import Anatomy, AnatomyParameters, build_anatomy, draw_anatomy
from tumsyn.simulate.bids import CohortSettings, check_protocols, cohort_subject, simulate_dataset
from tumsyn.simulate.render import ScanSettings, draw_scan_settings, render, render_on, scan

__all__ = [
    "Anatomy",
    "AnatomyParameters",
    "CohortSettings",
    "ScanSettings",
    "build_anatomy",
    "check_protocols",
    "cohort_subject",
    "draw_anatomy",
    "draw_scan_settings",
    "make_subject",
    "render",
    "render_on",
    "scan",
    "simulate_dataset",
]


def make_subject(
    seed: int, *, age: float | None = None, sex: str | None = None, enhancing: bool = False
) -> Anatomy:
    """A virtual subject from a seed (age and sex drawn unless given)."""
    return build_anatomy(draw_anatomy(seed, age=age, sex=sex, enhancing=enhancing))
