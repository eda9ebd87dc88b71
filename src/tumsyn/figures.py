"""Montages of 3D images: one column per image, rows axial, coronal and sagittal.

Each image is shown in world orientation (reoriented to RAS with nibabel, so left is left whatever
the voxel order) through the world point at the centre of the first image, with the pixel aspect of
its voxel size. Intensities are windowed per image at the 99.5th percentile of the non-zero voxels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn.io import atomic_output

__all__ = ["save_montage"]

_VIEWS = ("axial", "coronal", "sagittal")


def _slices(data: np.ndarray, affine: np.ndarray, world_point: np.ndarray):
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
    ras = np.asarray(image.dataobj)
    voxel = np.rint(np.linalg.solve(image.affine, np.append(world_point, 1.0))[:3]).astype(int)
    voxel = np.clip(voxel, 0, np.asarray(ras.shape) - 1)
    size = np.asarray(image.header.get_zooms()[:3], dtype=float)
    # (plane, aspect = vertical/horizontal pixel size), displayed with superior/anterior up.
    return (
        (ras[:, :, voxel[2]].T, size[1] / size[0]),
        (ras[:, voxel[1], :].T, size[2] / size[0]),
        (ras[voxel[0], :, :].T, size[2] / size[1]),
    )


def save_montage(
    path: str | os.PathLike,
    images: Sequence[tuple[str, np.ndarray, np.ndarray]],
    *,
    title: str | None = None,
) -> Path:
    """Write a PNG montage of ``(label, data, affine)`` images, atomically; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first_data, first_affine = images[0][1], images[0][2]
    centre = first_affine @ np.append((np.asarray(first_data.shape) - 1) / 2.0, 1.0)
    figure, axes = plt.subplots(
        len(_VIEWS), len(images), figsize=(2.2 * len(images), 2.4 * len(_VIEWS)), squeeze=False
    )
    figure.patch.set_facecolor("black")
    for column, (label, data, affine) in enumerate(images):
        values = np.asarray(data)[np.asarray(data) > 0]
        top = float(np.percentile(values, 99.5)) if values.size else 1.0
        for row, (plane, aspect) in enumerate(_slices(data, affine, centre[:3])):
            axis = axes[row, column]
            axis.imshow(plane, cmap="gray", origin="lower", vmin=0, vmax=top, aspect=aspect)
            axis.set_axis_off()
            if row == 0:
                axis.set_title(label, color="white", fontsize=9)
    if title:
        figure.suptitle(title, color="white", fontsize=10)
    figure.tight_layout()
    path = Path(path)
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=110, facecolor="black", format="png")
    plt.close(figure)
    return path
