"""The dural venous sinuses that a skull strip leaves inside the brain mask, as tubes in MNI space.

Why: in a real spin-echo image (T2w, PD, FLAIR) the fast-flowing blood of the sinuses gives no
signal (a flow void), so the straight and transverse sinuses are the darkest voxels inside a
skull-stripped T2w, far darker than white matter; in a T1-weighted gradient echo they are
intermediate, between CSF and grey matter. The template's tissue maps call them CSF, so the
simulator rendered them bright on T2w, and a network trained on it learnt a brain whose T2w has
nothing darker than white matter inside its rim.

The tubes' centre lines follow the darkest voxels of the real ICBM152 2009c T2 template inside
the 2009a brain mask (``benchmarks/find_sinuses.py`` prints them and how dark the real T2 is
inside each tube, with ``make icbm-t2``): the straight sinus along the midline from behind the
splenium down to the tentorium's back, the transverse sinuses outwards from there along the
tentorium's edge, and the lowest end of the superior sagittal sinus above the confluence (the
rest of the superior sagittal sinus lies outside the mask). Radii of 1.5 mm keep the real T2
inside each tube at about 0.5-0.6 of white matter's (wider tubes reach brighter tissue; the vein
of Galen, which the averaged T2 does not show dark, is left out). Every subject has the same
tubes, warped with its anatomy: the sinuses' course varies little between people next to the
voxel size.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.spatial import cKDTree

from tumsyn.io import Grid

__all__ = ["SINUSES", "sinus_fraction"]

#: Named tubes: a centre line (MNI mm, RAS) and a radius (mm) each.
Tubes = dict[str, tuple[tuple[tuple[float, float, float], ...], float]]

#: Centre lines (MNI mm, RAS) and radii (mm) of the sinuses within reach of a brain mask.
SINUSES: Tubes = {
    "straight": (((0.0, -54.0, 12.0), (0.0, -70.0, -1.0), (0.0, -87.0, -16.0)), 1.5),
    "left transverse": (
        ((0.0, -90.0, -18.0), (-19.0, -92.0, -22.0), (-31.0, -88.5, -22.0), (-41.0, -81.0, -22.0)),
        1.5,
    ),
    "right transverse": (
        ((0.0, -90.0, -18.0), (19.0, -92.0, -22.0), (31.0, -88.5, -22.0), (41.0, -81.0, -22.0)),
        1.5,
    ),
    "superior sagittal (lowest end)": (((0.0, -97.0, 14.0), (0.0, -100.0, 6.0)), 1.5),
}

_STEP_MM = 0.25


def _centre_points(line: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """Points every ``_STEP_MM`` along a polyline (N, 3), in mm."""
    corners = np.asarray(line, dtype=np.float64)
    pieces = []
    for start, end in itertools.pairwise(corners):
        count = max(int(np.ceil(np.linalg.norm(end - start) / _STEP_MM)), 1)
        pieces.append(start + np.linspace(0.0, 1.0, count + 1)[:, None] * (end - start))
    return np.concatenate(pieces)


def sinus_fraction(grid: Grid, tubes: Tubes | None = None) -> np.ndarray:
    """The fraction of every voxel of ``grid`` (an MNI-space grid) that the sinuses fill
    (``tubes``: :data:`SINUSES` unless given).

    A voxel's fraction is its centre's distance from a centre line, turned into partial volume
    linearly over one voxel around the tube's wall: 1 inside ``radius - 0.5``, 0 beyond
    ``radius + 0.5`` (in mm; meant for grids of about 1 mm).
    """
    index = np.indices(grid.shape, dtype=np.float32).reshape(3, -1)
    world = (grid.affine[:3, :3] @ index + grid.affine[:3, 3:4]).T
    fraction = np.zeros(index.shape[1], dtype=np.float32)
    for line, radius in (SINUSES if tubes is None else tubes).values():
        centre = _centre_points(line)
        near = np.all(
            (world > centre.min(axis=0) - radius - 1) & (world < centre.max(axis=0) + radius + 1),
            axis=1,
        )
        distance, _ = cKDTree(centre).query(world[near])
        tube = np.clip(radius + 0.5 - distance, 0.0, 1.0).astype(np.float32)
        fraction[near] = np.maximum(fraction[near], tube)
    return fraction.reshape(grid.shape)
