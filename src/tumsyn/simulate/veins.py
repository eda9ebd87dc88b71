"""Veins of a virtual subject: where deoxygenated blood sits, so that SWI and T2*w show dark veins.

Venous blood is paramagnetic and has a short T2*, which makes veins the darkest structures of a
susceptibility-weighted image (Haacke EM et al., Magn Reson Med 52:612-618, 2004; Reichenbach JR
et al., Radiology 204:272-277, 1997). Three families of veins are drawn, each a smooth curve in
template space, and rasterised as partial-volume fractions of a ``VEIN`` tissue class:

- *medullary* veins: thin veins that leave the lateral ventricles' wall and run outwards through
  white matter to the cortex (the radial lines of SWI);
- *subependymal* veins (thalamostriate, septal, internal cerebral): larger veins that run along
  the ventricle wall;
- *cortical* (superficial) veins: in the sulcal CSF at the brain's surface, along it.

A curve starts at a drawn point with a drawn heading, bends at a drawn constant rate about a drawn
axis, and is steered by the template's anatomy: medullary veins away from the ventricles,
the others along a surface (the ventricle wall, the brain's outer surface); it ends at its drawn
length or where it leaves its tissue. Calibres are *effective*: the simulator has no dipole
field, so the dark halo ("blooming") that a vein's field casts on SWI is folded into a wider vein.
Every random choice is drawn in :func:`draw_veins` (TorchIO's make-params-then-apply habit);
:func:`vein_fraction` applies them without randomness.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tumsyn.simulate.template import brain_depth, lateral_ventricles, load_template

__all__ = ["VEIN_KINDS", "Vein", "draw_veins", "vein_fraction"]

_STEP_MM = 0.5
_MAX_FRACTION = 0.95


@dataclass(frozen=True)
class _Family:
    """How many veins of a kind a subject has, how long and wide, and how they are steered."""

    count: tuple[int, int]  # drawn uniformly in [low, high)
    length_mm: tuple[float, float]
    radius_mm: tuple[float, float]  # effective, blooming included
    steer: str  # "outward" (up the field's gradient) or "surface" (along its level set)
    field: str  # "ventricles": distance from them; "depth": distance from the brain's edge
    level_mm: float  # the level set a surface vein keeps to
    start_band_mm: tuple[float, float]  # where on the field a vein starts
    start_tissue: str | None = None  # ... where this tissue of the template ("wm", "csf") ...
    start_fraction: float = 0.5  # ... fills more than this fraction of the voxel


VEIN_KINDS: dict[str, _Family] = {
    "medullary": _Family(
        (80, 160), (15.0, 40.0), (0.35, 0.6), "outward", "ventricles", 0.0, (1.0, 3.0), "wm", 0.9
    ),
    "subependymal": _Family(
        (6, 12), (15.0, 35.0), (0.7, 1.3), "surface", "ventricles", 1.5, (0.5, 2.0)
    ),
    "cortical": _Family(
        (50, 90), (20.0, 70.0), (0.6, 1.5), "surface", "depth", 1.5, (0.5, 2.5), "csf"
    ),
}


@dataclass(frozen=True)
class Vein:
    """One vein: where it starts (template voxel), its first heading (unit vector), its bending
    (rotation rate about an axis, radians per mm), its length and effective radius (mm)."""

    kind: str
    start: tuple[float, float, float]
    heading: tuple[float, float, float]
    bend: tuple[float, float, float]
    length_mm: float
    radius_mm: float


@functools.cache
def _fields() -> dict[str, np.ndarray]:
    """Distance (mm) from the lateral ventricles, and depth inside the brain, on the template."""
    return {
        "ventricles": ndimage.distance_transform_edt(~lateral_ventricles()).astype(np.float32),
        "depth": brain_depth(),
    }


@functools.cache
def _starts(kind: str) -> np.ndarray:
    """Template voxels (N, 3) where a vein of ``kind`` may start."""
    family = VEIN_KINDS[kind]
    field = _fields()[family.field]
    low, high = family.start_band_mm
    where = (field > low) & (field < high)
    if family.start_tissue is not None:
        where &= getattr(load_template(), family.start_tissue) > family.start_fraction
    return np.argwhere(where).astype(np.float32)


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-6)


def draw_veins(rng: np.random.Generator) -> tuple[Vein, ...]:
    """A subject's veins, every family, from ``rng``."""
    veins = []
    for kind, family in VEIN_KINDS.items():
        count = int(rng.integers(*family.count))
        starts = _starts(kind)[rng.choice(len(_starts(kind)), size=count)]
        starts = starts + rng.uniform(-0.5, 0.5, starts.shape)
        headings = _unit(rng.normal(size=(count, 3)))
        bends = _unit(rng.normal(size=(count, 3))) * rng.uniform(0.02, 0.08, (count, 1))
        lengths = rng.uniform(*family.length_mm, count)
        radii = rng.uniform(*family.radius_mm, count)
        veins += [
            Vein(
                kind,
                tuple(map(float, s)),
                tuple(map(float, h)),
                tuple(map(float, b)),
                float(length),
                float(radius),
            )
            for s, h, b, length, radius in zip(starts, headings, bends, lengths, radii, strict=True)
        ]
    return tuple(veins)


def _sample(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    return ndimage.map_coordinates(volume, points.T, order=1, mode="nearest")


def _gradient(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unit gradient of ``volume`` at ``points`` (N, 3), by central differences of 1 voxel."""
    offsets = np.concatenate([np.eye(3), -np.eye(3)]).astype(np.float32)
    values = _sample(volume, (points[None] + offsets[:, None]).reshape(-1, 3)).reshape(6, -1)
    return _unit((values[:3] - values[3:]).T)


def _trace(veins: list[Vein], family: _Family) -> list[np.ndarray]:
    """The points (every half millimetre) of veins of one family, all traced together."""
    template, field = load_template(), _fields()[family.field]
    brain = template.brain
    points = np.array([v.start for v in veins], dtype=np.float32)
    headings = np.array([v.heading for v in veins], dtype=np.float32)
    bends = np.array([v.bend for v in veins], dtype=np.float32)
    steps = np.array([v.length_mm for v in veins]) / _STEP_MM
    active = np.ones(len(veins), dtype=bool)
    paths: list[list[np.ndarray]] = [[p] for p in points]
    for step in range(int(steps.max())):
        active &= step < steps
        if not active.any():
            break
        gradient = _gradient(field, points)
        if family.steer == "outward":
            headings = _unit(headings + 0.3 * gradient)
        else:
            along = np.sum(headings * gradient, axis=1, keepdims=True)
            headings = _unit(headings - along * gradient)
        headings = _unit(headings + _STEP_MM * np.cross(bends, headings))
        moved = points + _STEP_MM * headings
        if family.steer == "surface":
            moved -= 0.5 * (_sample(field, points) - family.level_mm)[:, None] * gradient
        points = np.where(active[:, None], moved, points)
        inside = _sample(brain, points) > 0.5
        if family.steer == "outward":
            inside &= _sample(template.wm, points) > 0.2  # ends where it reaches the cortex
        active &= inside
        for i in np.flatnonzero(active):
            paths[i].append(points[i])
    return [np.array(path) for path in paths]


def vein_fraction(veins: tuple[Vein, ...], shape: tuple[int, ...]) -> np.ndarray:
    """The fraction of every template voxel that ``veins`` fill (float32, ``shape``).

    Each point of a traced vein adds its segment's volume (pi r^2 times the step) to the voxels
    around it by trilinear weights; a Gaussian of 0.6 voxel spreads the wider calibres over their
    cross-section. Capped at 0.95: a voxel keeps a little of its tissue.
    """
    volume = np.zeros(shape, dtype=np.float32)
    if not veins:
        return volume
    for kind, family in VEIN_KINDS.items():
        chosen = [v for v in veins if v.kind == kind]
        if not chosen:
            continue
        for vein, path in zip(chosen, _trace(chosen, family), strict=True):
            _splat(volume, path, np.pi * vein.radius_mm**2 * _STEP_MM)
    return np.minimum(ndimage.gaussian_filter(volume, 0.6), _MAX_FRACTION)


def _splat(volume: np.ndarray, points: np.ndarray, amount: float) -> None:
    """Add ``amount`` at each of ``points`` into ``volume`` by trilinear weights, in place."""
    base = np.floor(points).astype(int)
    frac = points - base
    for corner in np.ndindex(2, 2, 2):
        index = base + np.array(corner)
        weight = np.prod(np.where(np.array(corner) == 1, frac, 1.0 - frac), axis=1)
        keep = np.all((index >= 0) & (index < volume.shape), axis=1)
        np.add.at(volume, tuple(index[keep].T), amount * weight[keep])
