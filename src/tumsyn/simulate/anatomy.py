"""Virtual subjects: the template brain, deformed, aged and given lesions, from one seed.

Every random choice of a subject is drawn in :func:`draw_anatomy` from one seeded generator and
kept in an :class:`AnatomyParameters` record; :func:`build_anatomy` then applies it without any
randomness (TorchIO's make-params-then-apply habit), so the same seed gives the same subject bit
for bit and the record says what the subject is.

What varies between subjects:

- size: a global scale (smaller on average for women, about 9% in volume) and a small anisotropy;
- shape: a smooth random displacement (control points 16 mm apart, a few mm, small enough that
  the mapping stays one-to-one);
- age: atrophy grows after 25 years: ventricles expand (a radial displacement around each lateral
  ventricle) and sulci widen (cortical grey matter next to CSF turns into CSF);
- white-matter hyperintensities: their number grows with age, preferably periventricular;
- optionally an enhancing lesion: an enhancing rim around a non-enhancing core, with oedema;
- veins (medullary, subependymal, cortical; :mod:`tumsyn.simulate.veins`), deformed with the rest.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import ndimage

from tumsyn.io import Grid
from tumsyn.resample import sample_at
from tumsyn.simulate.template import (
    TEMPLATE_CLASSES,
    brain_depth,
    lateral_ventricles,
    load_template,
)
from tumsyn.simulate.tissues import TISSUES, TissueProperties, draw_jitter, tissue_properties
from tumsyn.simulate.veins import Vein, draw_veins, vein_fraction

__all__ = [
    "AGE_RANGE",
    "Anatomy",
    "AnatomyParameters",
    "Lesion",
    "build_anatomy",
    "draw_anatomy",
    "template_anatomy",
]

AGE_RANGE = (20.0, 85.0)
_CONTROL_SPACING_MM = 16.0
_DISPLACEMENT_MM = 2.0
_MEAN_SCALE = {"F": 0.955, "M": 0.985}


@dataclass(frozen=True)
class Lesion:
    """An ellipsoidal lesion: centre (template voxel), radii (mm) and its kind."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    kind: str  # "WMH" or "ENH"


@dataclass(frozen=True)
class AnatomyParameters:
    """Everything random about one virtual subject."""

    seed: int
    age: float
    sex: str
    scale: tuple[float, float, float]
    displacement: np.ndarray = field(repr=False)  # (3, a, b, c) control-point displacements, mm
    atrophy: float  # 0 (none) .. about 0.6 (strong)
    lesions: tuple[Lesion, ...]
    gadolinium_mm: float
    jitter: dict[str, np.ndarray] = field(repr=False)
    veins: tuple[Vein, ...] = field(default=(), repr=False)

    def summary(self) -> dict:
        """JSON-friendly description (for the data set's derivatives); veins by count."""
        data = asdict(self)
        data.pop("displacement")
        kinds = [vein.kind for vein in self.veins]
        data["veins"] = {kind: kinds.count(kind) for kind in sorted(set(kinds))}
        data["jitter"] = {k: [round(float(x), 4) for x in v] for k, v in self.jitter.items()}
        data["lesions"] = [asdict(lesion) for lesion in self.lesions]
        return data


@dataclass(frozen=True)
class Anatomy:
    """A virtual subject: tissue fractions on a 1 mm grid, and its tissue properties.

    ``fractions`` is ``(len(TISSUES), I, J, K)`` float32; the fractions of a voxel add up to its
    brain fraction (1 inside the brain, 0 outside).
    """

    parameters: AnatomyParameters
    grid: Grid
    fractions: np.ndarray

    @property
    def brain(self) -> np.ndarray:
        return self.fractions.sum(axis=0)

    def fraction(self, tissue: str) -> np.ndarray:
        return self.fractions[TISSUES.index(tissue)]

    def properties(self, field_strength: float | None) -> TissueProperties:
        p = self.parameters
        return tissue_properties(field_strength, jitter=p.jitter, gadolinium_mm=p.gadolinium_mm)

    def around(self, grid: Grid, margin_mm: float = 8.0) -> Anatomy:
        """The part of the subject that imaging ``grid`` needs: the 1 mm box covering the grid's
        field of view plus ``margin_mm`` (the voxel kernels' reach), so that a patch is rendered
        without blurring the whole head. Same subject, same properties; a view, not a copy."""
        first, last = grid.extent_in(self.grid)
        reach = margin_mm / np.asarray(self.grid.voxel_size)
        low = np.clip(np.floor(first - reach).astype(int), 0, self.grid.shape)
        high = np.clip(np.ceil(last + reach).astype(int) + 1, 0, self.grid.shape)
        high = np.maximum(high, low + 1)
        box = tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))
        part = self.grid.box(low, high - low)
        return Anatomy(self.parameters, part, self.fractions[(slice(None), *box)])


@functools.cache
def _landmarks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template voxels: lateral ventricle centres (2, 3), deep-WM candidates (N, 3), centre."""
    template = load_template()
    labels, count = ndimage.label(lateral_ventricles())
    ventricles = np.array(ndimage.center_of_mass(labels > 0, labels, range(1, count + 1)))
    candidates = np.argwhere((template.wm > 0.95) & (brain_depth() > 6)).astype(np.float32)
    centre = np.array(ndimage.center_of_mass(template.brain))
    return ventricles, candidates, centre


def _wmh_count(age: float, rng: np.random.Generator) -> int:
    load = np.clip((age - 40.0) / 45.0, 0.0, 1.0)
    return int(rng.poisson(0.3 + 25.0 * load**2))


def draw_anatomy(
    seed: int,
    *,
    age: float | None = None,
    sex: str | None = None,
    enhancing: bool = False,
) -> AnatomyParameters:
    """Draw a subject's random parameters from ``seed`` (age and sex drawn unless given)."""
    rng = np.random.default_rng(seed)
    age = float(rng.uniform(*AGE_RANGE)) if age is None else float(age)
    sex = str(rng.choice(["F", "M"])) if sex is None else sex
    scale = _MEAN_SCALE[sex] * np.exp(rng.normal(0.0, 0.03)) * np.exp(rng.normal(0.0, 0.02, 3))
    shape = load_template().grid.shape
    control = tuple(int(np.ceil(n / _CONTROL_SPACING_MM)) + 1 for n in shape)
    displacement = rng.normal(0.0, _DISPLACEMENT_MM, size=(3, *control)).astype(np.float32)
    atrophy = float(np.clip((age - 25.0) / 60.0, 0.0, 1.0) * rng.uniform(0.6, 1.2) * 0.5)

    ventricles, candidates, _ = _landmarks()
    count = _wmh_count(age, rng)
    # Periventricular preference: the closer to a ventricle, the likelier a lesion.
    distance = np.min(np.linalg.norm(candidates[:, None] - ventricles[None], axis=2), axis=1)
    weight = np.exp(-distance / 20.0) + 0.15
    chosen = rng.choice(len(candidates), size=count, p=weight / weight.sum())
    lesions = [
        Lesion(
            tuple(float(x) for x in candidates[i] + rng.uniform(-0.5, 0.5, 3)),
            tuple(float(r) for r in rng.lognormal(np.log(2.5), 0.35) * rng.uniform(0.7, 1.3, 3)),
            "WMH",
        )
        for i in chosen
    ]
    gadolinium = 0.0
    if enhancing:
        i = int(rng.integers(len(candidates)))
        radius = rng.uniform(5.0, 11.0)
        radii = tuple(float(r) for r in radius * rng.uniform(0.8, 1.2, 3))
        lesions.append(Lesion(tuple(float(x) for x in candidates[i]), radii, "ENH"))
        gadolinium = float(rng.uniform(0.2, 0.6))
    return AnatomyParameters(
        seed=int(seed),
        age=round(age, 1),
        sex=sex,
        scale=tuple(float(s) for s in scale),
        displacement=displacement,
        atrophy=atrophy,
        lesions=tuple(lesions),
        gadolinium_mm=gadolinium,
        jitter=draw_jitter(rng),
        veins=draw_veins(rng),
    )


def _sampling_positions(parameters: AnatomyParameters, shape: tuple[int, ...]) -> np.ndarray:
    """Template voxel sampled by every subject voxel: scale, smooth displacement, ventricles."""
    import torch
    import torch.nn.functional as F

    ventricles, _, centre = _landmarks()
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    smooth = F.interpolate(
        torch.from_numpy(parameters.displacement)[None],
        size=shape,
        mode="trilinear",
        align_corners=True,
    )[0].numpy()
    positions = np.empty((3, *shape), dtype=np.float32)
    for axis in range(3):
        view = [None, None, None]
        view[axis] = slice(None)
        offset = (axes[axis] - centre[axis])[tuple(view)]
        positions[axis] = centre[axis] + offset / parameters.scale[axis] + smooth[axis]
    # Ventricular enlargement: sample closer to each ventricle centre, which widens it.
    strength = 0.45 * parameters.atrophy
    if strength > 0:
        grids = np.meshgrid(*axes, indexing="ij", sparse=True)
        for centre_v in ventricles:
            delta = [g - c for g, c in zip(grids, centre_v, strict=True)]
            falloff = np.exp(-(delta[0] ** 2 + delta[1] ** 2 + delta[2] ** 2) / (2 * 18.0**2))
            for axis in range(3):
                positions[axis] -= strength * delta[axis] * falloff
    return positions


def _box(shape: tuple[int, ...], lesion: Lesion, scale: float) -> tuple[slice, ...]:
    """Voxels that a lesion scaled by ``scale`` can touch."""
    centre, radii = np.asarray(lesion.centre), np.asarray(lesion.radii) * scale
    low = np.maximum(np.floor(centre - 2 * radii).astype(int), 0)
    high = np.minimum(np.ceil(centre + 2 * radii).astype(int) + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high, strict=True))


def _soft_ellipsoid(box: tuple[slice, ...], lesion: Lesion, scale: float) -> np.ndarray:
    """The lesion's ellipsoid scaled by ``scale``: 1 inside, 0 outside, a 1-2 voxel soft edge."""
    centre, radii = np.asarray(lesion.centre), np.asarray(lesion.radii) * scale
    grids = np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij")
    r = np.sqrt(sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, radii, strict=True)))
    return (1.0 / (1.0 + np.exp((r - 1.0) / 0.12))).astype(np.float32)


def _add_lesions(fractions: np.ndarray, lesions: tuple[Lesion, ...]) -> None:
    """Move tissue fractions into the lesion classes, in place."""
    wm, wmh, enh = (TISSUES.index(t) for t in ("WM", "WMH", "ENH"))
    shape = fractions.shape[1:]
    for lesion in lesions:
        # White-matter hyperintensity, or the oedema around an enhancing lesion: in WM only.
        extent = 1.0 if lesion.kind == "WMH" else 1.8
        box = _box(shape, lesion, extent)
        moved = fractions[(wm, *box)] * _soft_ellipsoid(box, lesion, extent)
        fractions[(wm, *box)] -= moved
        fractions[(wmh, *box)] += moved
        if lesion.kind == "ENH":
            # The lesion replaces all tissue: an enhancing rim around a non-enhancing core.
            outer = _soft_ellipsoid(box, lesion, 1.0)
            inner = _soft_ellipsoid(box, lesion, 0.55)
            local = fractions[(slice(None), *box)]
            brain = local.sum(axis=0)
            local *= 1.0 - outer
            local[enh] += brain * (outer - inner)
            local[wmh] += brain * inner


def _add_veins(fractions: np.ndarray, veins: np.ndarray) -> None:
    """Veins take their fraction of every voxel from the tissues there, in place."""
    brain = fractions.sum(axis=0)
    fractions *= 1.0 - veins
    fractions[TISSUES.index("VEIN")] += brain * veins


def build_anatomy(parameters: AnatomyParameters) -> Anatomy:
    """The subject described by ``parameters`` (no randomness)."""
    template = load_template()
    shape = template.grid.shape
    veins = vein_fraction(parameters.veins, shape)
    warped = sample_at(
        np.stack([template.gm, template.wm, template.csf, template.dura, template.sinus, veins]),
        _sampling_positions(parameters, shape),
    )
    gm, wm, csf, dura, sinus, veins = (np.clip(m, 0.0, 1.0) for m in warped)
    # Sulcal widening: grey matter that borders CSF partly becomes CSF.
    if parameters.atrophy > 0:
        near_csf = np.clip(2.0 * ndimage.gaussian_filter(csf, 1.0), 0.0, 1.0)
        lost = parameters.atrophy * gm * near_csf
        gm -= lost
        csf += lost
    fractions = np.zeros((len(TISSUES), *shape), dtype=np.float32)
    fractions[TISSUES.index("GM")] = gm
    fractions[TISSUES.index("WM")] = wm
    fractions[TISSUES.index("CSF")] = csf
    fractions[TISSUES.index("DURA")] = dura
    fractions[TISSUES.index("SINUS")] = sinus
    _add_lesions(fractions, parameters.lesions)
    _add_veins(fractions, veins)
    return Anatomy(parameters=parameters, grid=template.grid, fractions=fractions)


def template_anatomy() -> Anatomy:
    """The template itself as a subject: no deformation, atrophy, lesions or tissue jitter."""
    template = load_template()
    fractions = np.zeros((len(TISSUES), *template.grid.shape), dtype=np.float32)
    for tissue in TEMPLATE_CLASSES:
        fractions[TISSUES.index(tissue)] = template.fraction(tissue)
    ones = np.ones(len(TISSUES))
    parameters = AnatomyParameters(
        seed=-1,
        age=float("nan"),
        sex="n/a",
        scale=(1.0, 1.0, 1.0),
        displacement=np.zeros((3, 1, 1, 1), dtype=np.float32),
        atrophy=0.0,
        lesions=(),
        gadolinium_mm=0.0,
        jitter={name: ones for name in ("t1", "t2", "t2star", "pd")},
    )
    return Anatomy(parameters=parameters, grid=template.grid, fractions=fractions)
