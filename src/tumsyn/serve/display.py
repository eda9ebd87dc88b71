"""From a viewer's crosshair to a preview picture: which plane, and which way up.

The page asks for the axial, coronal or sagittal plane through a point in world millimetres (the
viewer's crosshair). Any grid orientation is allowed, so the plane is the array axis nearest to
that world axis (nibabel's ``io_orientation``), and the picture is turned to the viewer's
neurological convention: the patient's right on the right, superior or anterior at the top.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from tumsyn.errors import TumsynError
from tumsyn.io import Grid

__all__ = ["VIEWS", "display_plane", "plane_index", "png_bytes"]

# World axes (RAS: x right, y anterior, z superior): the plane's normal, the picture's columns
# (increasing to the right) and rows (increasing upwards).
VIEWS = {"axial": (2, 0, 1), "coronal": (1, 0, 2), "sagittal": (0, 1, 2)}


def plane_index(grid: Grid, view: str, mm: Sequence[float]) -> tuple[int, int]:
    """``(array axis, index)`` of the ``view`` plane of ``grid`` through world point ``mm``
    (clipped to the grid)."""
    if view not in VIEWS:
        raise TumsynError(f"view {view!r}: expected one of {', '.join(VIEWS)}")
    axes = nib.orientations.io_orientation(grid.affine)[:, 0]
    axis = int(np.flatnonzero(axes == VIEWS[view][0])[0])
    voxel = np.linalg.solve(grid.affine, [*map(float, mm), 1.0])[:3]
    return axis, int(np.clip(np.rint(voxel[axis]), 0, grid.shape[axis] - 1))


def display_plane(plane: np.ndarray, grid: Grid, axis: int, view: str) -> np.ndarray:
    """``plane`` (array axis ``axis`` of ``grid`` removed) turned for display: rows top to
    bottom, columns left to right."""
    orientation = nib.orientations.io_orientation(grid.affine)
    others = [a for a in range(3) if a != axis]
    world = {int(orientation[a, 0]): (n, orientation[a, 1]) for n, a in enumerate(others)}
    _, column_axis, row_axis = VIEWS[view]
    (row, row_sign), (_, column_sign) = world[row_axis], world[column_axis]
    picture = plane if row == 0 else plane.T
    if row_sign > 0:  # larger world coordinates at the top
        picture = picture[::-1]
    if column_sign < 0:
        picture = picture[:, ::-1]
    return np.ascontiguousarray(picture)


def png_bytes(picture: np.ndarray) -> bytes:
    """A greyscale PNG, windowed from 0 to the 99.5th percentile of the non-zero voxels."""
    from matplotlib.image import imsave

    values = picture[picture > 0]
    top = float(np.percentile(values, 99.5)) if values.size else 1.0
    buffer = io.BytesIO()
    imsave(
        buffer, np.clip(picture / max(top, 1e-6), 0, 1), cmap="gray", vmin=0, vmax=1, format="png"
    )
    return buffer.getvalue()
