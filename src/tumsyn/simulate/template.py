"""The anatomical template: MNI152 2009a tissue maps as shipped inside the nilearn wheel.

nilearn ships the ICBM 2009a nonlinear symmetric T1 template (brain-extracted) and its grey- and
white-matter probability maps, 1 mm, as uint8 (0-255). It does not ship a CSF map or a brain mask,
so both are derived here: the brain mask is where the brain-extracted T1 is non-zero (holes filled),
and what the mask holds beyond grey and white matter is CSF (sulci, ventricles, cisterns) or, where
the real T1 is darker than CSF can make it, dura (:func:`_dura_share`), or, inside the tubes of
:mod:`tumsyn.simulate.sinuses`, the blood of the venous sinuses.

Licence: the ICBM 2009 templates are copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging
Centre, Montreal Neurological Institute, McGill University, distributed with permission to use,
copy and modify (the notice ships with nilearn).
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from tumsyn.errors import InputFileError
from tumsyn.io import Grid
from tumsyn.simulate.sinuses import sinus_fraction

__all__ = [
    "TEMPLATE_CLASSES",
    "Template",
    "brain_depth",
    "lateral_ventricles",
    "load_template",
    "template_path",
]

#: The tissue classes the template holds (the others, lesions and veins, are drawn per subject).
TEMPLATE_CLASSES: tuple[str, ...] = ("GM", "WM", "CSF", "DURA", "SINUS")

_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
# Margin of the crop around the brain, in voxels (mm): room for deformation and atrophy.
_MARGIN = 6


@dataclass(frozen=True)
class Template:
    """Tissue fractions of the template brain, cropped to the brain with a margin.

    ``gm``, ``wm``, ``csf``, ``dura``, ``sinus`` are float32 fractions that add up to ``brain`` (1
    inside the brain mask, 0 outside); ``t1`` is the real T1-weighted template intensity (for
    calibration).
    """

    grid: Grid
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    dura: np.ndarray
    sinus: np.ndarray
    t1: np.ndarray

    @property
    def brain(self) -> np.ndarray:
        return sum(self.fraction(name) for name in TEMPLATE_CLASSES)

    def fraction(self, name: str) -> np.ndarray:
        """The fraction map of one of :data:`TEMPLATE_CLASSES`."""
        return getattr(self, name.lower())


def template_path(kind: str) -> Path:
    """Path of a template file (``kind``: t1, gm or wm) inside the installed nilearn package."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise InputFileError("the simulator needs nilearn's MNI152 template: pip install nilearn")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / _FILE.format(kind)
    if not path.is_file():
        raise InputFileError(f"{path}: MNI152 template missing from the nilearn package")
    return path


def _read(kind: str) -> tuple[np.ndarray, np.ndarray]:
    image = nib.load(template_path(kind))
    return np.asarray(image.dataobj, dtype=np.float32), np.asarray(image.affine, dtype=np.float64)


# The real T1's level (0-255 scale) of a voxel wholly of dura and the bone it borders: the darkest
# percent of the voxels the tissue maps call CSF, well below the ventricles' CSF (about 69).
_DURA_T1 = 30.0
# How deep below the mask's edge (mm) the skull strip's rim of meninges reaches.
_DURA_DEPTH_MM = 3.0


def _dura_share(
    t1: np.ndarray, gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, brain: np.ndarray
) -> np.ndarray:
    """The part of each voxel's non-brain fraction that is dura (and bone) rather than CSF.

    Why: the template's tissue maps hold only grey and white matter, so everything else in the
    brain mask was CSF, and a T2w rendered it bright up to the mask's edge. In the real T1, about
    10 ml of those voxels (a rim one or two voxels deep, where the skull strip kept meninges) are
    darker than CSF can be: the signal of a low-water, short-T2 tissue. A voxel's share is how
    far its T1 falls below what its grey, white and CSF fractions would give (linear unmixing
    against pure tissue levels), as a fraction of the gap between CSF and dura, in voxels at
    least a fifth CSF within ``_DURA_DEPTH_MM`` of the mask's edge (deeper, the same unmixing
    reads the spread of CSF's own intensity: the ventricles' darker half would turn partly
    into dura). ``brain`` is the brain mask."""
    depth = ndimage.distance_transform_edt(brain)
    level = {name: float(np.mean(t1[brain & (m > 0.95)])) for name, m in (("gm", gm), ("wm", wm))}
    level["csf"] = float(np.median(t1[(csf > 0.95) & (depth > 12)]))
    expected = gm * level["gm"] + wm * level["wm"] + csf * level["csf"]
    gap = np.maximum(csf * (level["csf"] - _DURA_T1), 1e-6)
    rim = (csf > 0.2) & (depth <= _DURA_DEPTH_MM)
    return np.where(rim, np.clip((expected - t1) / gap, 0.0, 1.0), 0.0)


@functools.cache
def load_template() -> Template:
    """The template, read once per process."""
    t1, affine = _read("t1")
    gm, wm = (_read(kind)[0] / 255.0 for kind in ("gm", "wm"))
    mask = ndimage.binary_fill_holes(t1 > 0)
    gm = np.where(mask, gm, 0.0)
    wm = np.where(mask, wm, 0.0)
    tissue = gm + wm
    over = tissue > 1.0  # rounding of the uint8 maps
    gm = np.where(over, gm / np.maximum(tissue, 1e-6), gm)
    wm = np.where(over, wm / np.maximum(tissue, 1e-6), wm)
    rest = np.where(mask, 1.0 - gm - wm, 0.0)
    dura = rest * _dura_share(t1, gm, wm, rest, mask)
    csf = rest - dura

    found = np.argwhere(mask)
    low = np.maximum(found.min(axis=0) - _MARGIN, 0)
    high = np.minimum(found.max(axis=0) + _MARGIN + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    shift = np.eye(4)
    shift[:3, 3] = low
    grid = Grid(tuple(int(b - a) for a, b in zip(low, high, strict=True)), affine @ shift)  # type: ignore[arg-type]
    gm, wm, csf, dura, t1 = (
        np.ascontiguousarray(m[crop], dtype=np.float32) for m in (gm, wm, csf, dura, t1)
    )
    sinus = csf * sinus_fraction(grid)  # the sinuses' blood fills what the maps called CSF
    return Template(grid, gm, wm, csf - sinus, dura, sinus, t1)


@functools.cache
def brain_depth() -> np.ndarray:
    """Distance (mm) of every template voxel from the brain's edge (0 outside the brain)."""
    return ndimage.distance_transform_edt(load_template().brain > 0.5).astype(np.float32)


@functools.cache
def lateral_ventricles() -> np.ndarray:
    """Mask of the template's lateral ventricles: the two largest bodies of mostly-CSF voxels
    more than 12 mm inside the brain (sulcal CSF lies nearer the surface)."""
    deep_csf = (load_template().csf > 0.6) & (brain_depth() > 12)
    labels, count = ndimage.label(deep_csf)
    sizes = ndimage.sum_labels(deep_csf, labels, range(1, count + 1))
    return np.isin(labels, 1 + np.argsort(sizes)[::-1][:2])
