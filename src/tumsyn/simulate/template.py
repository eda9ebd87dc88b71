"""The anatomical template: MNI152 2009a tissue maps as shipped inside the nilearn wheel.

nilearn ships the ICBM 2009a nonlinear symmetric T1 template (brain-extracted) and its grey- and
white-matter probability maps, 1 mm, as uint8 (0-255). It does not ship a CSF map or a brain mask,
so both are derived here: the brain mask is where the brain-extracted T1 is non-zero (holes filled),
and CSF is what the mask holds beyond grey and white matter (sulci, ventricles, cisterns).

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

__all__ = ["Template", "brain_depth", "lateral_ventricles", "load_template", "template_path"]

_FILE = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
# Margin of the crop around the brain, in voxels (mm): room for deformation and atrophy.
_MARGIN = 6


@dataclass(frozen=True)
class Template:
    """Tissue fractions of the template brain, cropped to the brain with a margin.

    ``gm``, ``wm``, ``csf`` are float32 fractions that add up to ``brain`` (1 inside the brain,
    0 outside); ``t1`` is the real T1-weighted template intensity (for calibration).
    """

    grid: Grid
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    t1: np.ndarray

    @property
    def brain(self) -> np.ndarray:
        return self.gm + self.wm + self.csf


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
    csf = np.where(mask, 1.0 - gm - wm, 0.0)

    found = np.argwhere(mask)
    low = np.maximum(found.min(axis=0) - _MARGIN, 0)
    high = np.minimum(found.max(axis=0) + _MARGIN + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
    shift = np.eye(4)
    shift[:3, 3] = low
    grid = Grid(tuple(int(b - a) for a, b in zip(low, high, strict=True)), affine @ shift)  # type: ignore[arg-type]
    maps = [np.ascontiguousarray(m[crop], dtype=np.float32) for m in (gm, wm, csf, t1)]
    return Template(grid, *maps)


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
