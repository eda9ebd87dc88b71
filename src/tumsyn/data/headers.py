"""Image geometry from NIfTI headers alone (the voxel data is never read).

Indexing a data set of thousands of images and checking that the images of a subject share one
grid must not decompress every volume; ``nibabel.load`` parses the header and leaves the data on
disk until asked for it.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn.errors import ImageError, InputFileError
from tumsyn.io import Grid

__all__ = ["read_grid"]


def read_grid(path: str | os.PathLike) -> Grid:
    """The 3D grid (shape and affine) of a NIfTI image, from its header only.

    A 4D file with a single volume counts as 3D, as in :func:`tumsyn.io.load_nifti`.

    Raises:
        InputFileError: the file does not exist.
        ImageError: not a readable NIfTI header, or not a 3D image.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such image file")
    try:
        image = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, zlib.error, ValueError) as error:
        raise ImageError(f"{path}: cannot be read as NIfTI ({error})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise ImageError(f"{path}: not a NIfTI image ({type(image).__name__})")
    shape = tuple(int(n) for n in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ImageError(f"{path}: expected a 3D image, got {len(shape)}D with shape {shape}")
    return Grid(shape, np.asarray(image.affine, dtype=np.float64))  # type: ignore[arg-type]
