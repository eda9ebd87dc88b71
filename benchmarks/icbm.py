"""The MNI ICBM152 2009c T1 and T2 templates that ``make icbm-t2`` puts in data/icbm2009c/.

Real-derived averages of the T1w and T2w scans of the same 152 young adults (1.5 T), registered
together and to nilearn's 2009a template, whose tissue maps make the simulator's anatomy. Used by
``calibrate_t2.py`` (the simulator's T2w contrast), ``exp_icbm_pairs.py`` (T1w <-> T2w with real
contrast) and ``exp_modality_guess.py`` (the guess on a real T2w).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from tumsyn.simulate.template import load_template

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "data" / "icbm2009c"
T1_FILE, T2_FILE = (FOLDER / f"mni_icbm152_{k}_tal_nlin_sym_09c.nii" for k in ("t1", "t2"))


def available() -> bool:
    """Whether ``make icbm-t2`` has put both templates in place."""
    return T1_FILE.is_file() and T2_FILE.is_file()


def _read(path: Path) -> nib.Nifti1Image:
    if not path.is_file():
        sys.exit(f"{path} is missing: run `make icbm-t2` first")
    return nib.load(path)


def on_template_grid(path: Path) -> np.ndarray:
    """A 2009c template resampled (linearly) onto the simulator's cropped 2009a template grid."""
    grid = load_template().grid
    image = resample_from_to(_read(path), (grid.shape, grid.affine), order=1)
    return np.asarray(image.dataobj, dtype=np.float64)


def brain_extracted(path: Path) -> nib.Nifti1Image:
    """A 2009c template, zero outside the 2009a template's brain (tissue fractions above one
    half), on its own grid: the brain-extracted input a model expects."""
    image = _read(path)
    template = load_template()
    brain = nib.Nifti1Image((template.brain > 0.5).astype(np.uint8), template.grid.affine)
    inside = np.asarray(resample_from_to(brain, image, order=0).dataobj) > 0
    data = np.where(inside, np.asarray(image.dataobj, dtype=np.float32), np.float32(0))
    return nib.Nifti1Image(data, image.affine)
