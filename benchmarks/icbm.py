"""The MNI ICBM152 2009c T1 and T2 templates that ``make icbm-t2`` puts in data/icbm2009c/, and
the ICBM-like protocols they are compared under.

Real-derived averages of the T1w and T2w scans of the same 152 young adults (1.5 T), registered
together and to nilearn's 2009a template, whose tissue maps make the simulator's anatomy. Used by
``calibrate_t2.py`` (the simulator's T2w contrast), ``exp_icbm_pairs.py`` (T1w <-> T2w with real
contrast) and ``exp_modality_guess.py`` (the guess on a real T2w); the T1w protocol also by
``calibrate_simulator.py`` (against nilearn's 2009a T1).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.processing import resample_from_to

from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate.template import load_template

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "data" / "icbm2009c"
T1_FILE, T2_FILE = (FOLDER / f"mni_icbm152_{k}_tal_nlin_sym_09c.nii" for k in ("t1", "t2"))
# The templates record no protocol; these are the 1.5 T Philips protocols BrainWeb simulates as
# the ICBM ones: a spoiled gradient echo T1w, and the late echo of a dual spin echo T2w.
T2_TR, T2_TE = 3300.0, 120.0  # ms


def t1w_protocol() -> ImagingMetadata:
    """The ICBM-like T1w: spoiled gradient echo, TR 18 ms, TE 10 ms, flip angle 30 degrees."""
    return ImagingMetadata(
        modality="T1w", field_strength=1.5, manufacturer="Philips", voxel_size=(1.0, 1.0, 1.0),
        tr=18.0, te=10.0, flip_angle=30.0,
    )  # fmt: skip


def t2w_protocol(te: float = T2_TE) -> ImagingMetadata:
    """The ICBM-like T2w spin echo (TR 3300 ms) at echo time ``te`` (ms; default its late echo)."""
    return ImagingMetadata(
        modality="T2w", field_strength=1.5, manufacturer="Philips", voxel_size=(1.0, 1.0, 1.0),
        tr=T2_TR, te=te, flip_angle=90.0,
    )  # fmt: skip


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
