"""Randomised input images, for models that must read real scans of any contrast (SynthSR-style).

A model trained on the simulator's few dozen protocols learns those contrasts and little else; a
real T2w then looks foreign to it. Following SynthSR (Iglesias JE et al., Sci Adv 9:eadd3607,
2023), the *input* side of a training pair is randomised far beyond what scanners produce, while
the target keeps the exact physics of its prompt. One input is drawn at a time from a seeded
generator (:meth:`InputRandomizer.make_params`, TorchIO's make-parameters-then-apply split, so a
draw can be logged, replayed and tested) and imaged by :func:`render_input`:

- contrast: with probability ``physics_probability`` a protocol of a random sequence family with
  timings drawn across and beyond clinical ranges (:func:`draw_protocol`; with
  ``textbook_order`` only timings that keep the family's textbook tissue order), otherwise random
  signals per tissue class (every ordering possible);
- resolution: voxel sizes in ``voxel_size``, and with ``thick_probability`` one thick axis
  (2D acquisitions; axial, coronal or sagittal) imaged with the simulator's slice profile;
- scanner: bias field, Rician noise at a random SNR, a small oblique rotation and shift
  (misregistration against the target), a gamma of the intensities, and a brain mask grown or
  shrunk by a few mm (imperfect skull stripping).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy import ndimage

from tumsyn.config import StrictConfig
from tumsyn.io import Grid
from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate.anatomy import Anatomy
from tumsyn.simulate.contrast import in_textbook_order
from tumsyn.simulate.render import ScanSettings, scan_grid, scan_object, tissue_object
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.tissues import TISSUES

__all__ = [
    "INPUT_MODALITIES",
    "InputDraw",
    "InputRandomizer",
    "draw_protocol",
    "input_grid",
    "render_input",
]

# Sequence family -> modality and ranges (ms, degrees) of the drawn timings, about 1.5 times wider
# than clinical protocols use at either end.
_FAMILIES: dict[str, dict] = {
    "mprage": {"modality": "T1w", "tr": (1200, 4000), "te": (1.5, 6), "ti": (400, 1500),
               "flip": (4, 15)},
    "t1-gre": {"modality": "T1w", "tr": (5, 60), "te": (1.5, 10), "flip": (4, 50)},
    "t1-se": {"modality": "T1w", "tr": (250, 1000), "te": (6, 25), "flip": (90, 90)},
    "t2-tse": {"modality": "T2w", "tr": (2000, 10000), "te": (50, 180), "flip": (90, 180)},
    "flair": {"modality": "FLAIR", "tr": (5000, 12000), "te": (60, 160), "ti": (1500, 3200),
              "flip": (90, 180)},
    "pd-tse": {"modality": "PD", "tr": (1500, 7000), "te": (5, 35), "flip": (90, 180)},
    "t2star": {"modality": "T2star", "tr": (200, 1500), "te": (8, 50), "flip": (8, 35)},
    "swi": {"modality": "SWI", "tr": (15, 60), "te": (10, 45), "flip": (8, 25)},
}  # fmt: skip
#: Modalities of the physical (protocol-drawn) inputs.
INPUT_MODALITIES = frozenset(family["modality"] for family in _FAMILIES.values())
_FIELDS = (1.5, 3.0, 7.0)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def draw_protocol(rng: np.random.Generator) -> ImagingMetadata:
    """A random protocol: a sequence family, a field strength, timings drawn log-uniformly."""
    family = _FAMILIES[str(rng.choice(sorted(_FAMILIES)))]
    tr = _log_uniform(rng, *family["tr"])
    te = min(_log_uniform(rng, *family["te"]), 0.5 * tr)
    ti = None
    if "ti" in family:
        ti = min(_log_uniform(rng, *family["ti"]), 0.8 * tr)
    return ImagingMetadata(
        modality=family["modality"],
        field_strength=float(rng.choice(_FIELDS)),
        tr=round(tr, 2),
        te=round(te, 2),
        ti=None if ti is None else round(ti, 1),
        flip_angle=round(float(rng.uniform(*family["flip"])), 1),
        voxel_size=(1.0, 1.0, 1.0),  # replaced by the draw's own voxel size
    )


@dataclass(frozen=True)
class InputDraw:
    """Everything one randomised input is made of."""

    protocol: ImagingMetadata | None  # a physical protocol, or None: random tissue signals
    signals: tuple[float, ...] | None  # per tissue class (TISSUES order) when no protocol
    voxel_size: tuple[float, float, float]
    scan: ScanSettings  # SNR, bias field, oblique rotation, noise seed
    shift_mm: tuple[float, float, float]
    gamma: float
    mask_margin_mm: float  # the brain mask grown (> 0) or shrunk (< 0) by this much


class InputRandomizer(StrictConfig):
    """The ranges inputs are drawn from."""

    physics_probability: float = Field(default=0.5, ge=0.0, le=1.0)
    voxel_size: tuple[float, float] = (0.7, 3.0)  # in-plane / isotropic, mm
    thick_probability: float = Field(default=0.4, ge=0.0, le=1.0)
    slice_thickness: tuple[float, float] = (2.0, 6.0)  # mm, the thick axis of 2D inputs
    snr: tuple[float, float] = (8.0, 80.0)
    bias: float = 0.2  # standard deviation of the bias polynomial's coefficients
    oblique_deg: float = 3.0
    shift_mm: float = 1.0
    gamma_sd: float = 0.25  # of log(gamma)
    mask_margin_mm: tuple[float, float] = (-2.0, 3.0)
    # Redraw a protocol until its tissues are in its family's textbook order (contrast.py): real
    # scans named T1w have WM > GM > CSF, but an eighth of the drawn T1w timings do not (a spoiled
    # gradient echo at TR 60 ms and 4 degrees is proton-density weighted), and a network that
    # reads inputs of one modality is then taught to hedge between orderings.
    textbook_order: bool = False

    def make_params(self, rng: np.random.Generator) -> InputDraw:
        """Draw one input's parameters (all of them here, so a seed fixes the whole input)."""
        physics = rng.random() < self.physics_probability
        protocol = self._protocol(rng) if physics else None
        signals = None if physics else tuple(float(v) for v in rng.uniform(0.02, 1.0, len(TISSUES)))
        voxel = np.full(3, rng.uniform(*self.voxel_size))
        if rng.random() < self.thick_probability:
            voxel[int(rng.integers(3))] = rng.uniform(*self.slice_thickness)
        settings = ScanSettings(
            snr=_log_uniform(rng, *self.snr),
            bias=tuple(float(c) for c in rng.normal(0.0, self.bias, 9)),
            rotation_deg=tuple(float(a) for a in rng.uniform(-1, 1, 3) * self.oblique_deg),
            noise_seed=int(rng.integers(2**31)),
        )
        return InputDraw(
            protocol=protocol,
            signals=signals,
            voxel_size=tuple(round(float(v), 3) for v in voxel),
            scan=settings,
            shift_mm=tuple(float(v) for v in rng.uniform(-1, 1, 3) * self.shift_mm),
            gamma=float(np.exp(rng.normal(0.0, self.gamma_sd))),
            mask_margin_mm=float(rng.uniform(*self.mask_margin_mm)),
        )

    def _protocol(self, rng: np.random.Generator) -> ImagingMetadata:
        while True:  # terminates: most draws of every family are in order (tests/simulate)
            protocol = draw_protocol(rng)
            if not self.textbook_order or in_textbook_order(protocol):
                return protocol


def _tissue_signals(anatomy: Anatomy, draw: InputDraw) -> np.ndarray:
    if draw.protocol is None:
        return np.asarray(draw.signals)
    protocol = draw.protocol.replace(voxel_size=draw.voxel_size)
    return signal(anatomy.properties(protocol.field_strength), protocol)


def input_grid(anatomy: Anatomy, draw: InputDraw) -> Grid:
    """The whole input's grid: the subject's field of view at the draw's voxel size, rotated and
    shifted by the draw (a patch is a box of it)."""
    grid = scan_grid(anatomy, draw.voxel_size, draw.scan.rotation_deg)
    affine = grid.affine.copy()
    affine[:3, 3] += draw.shift_mm
    return Grid(grid.shape, affine)


def render_input(
    anatomy: Anatomy, draw: InputDraw, grid: Grid | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The randomised input image and its affine: on its own whole grid (:func:`input_grid`), or
    on ``grid``, a box of it (a training patch, rendered from the part of the subject it needs;
    the bias field then spans the patch)."""
    if grid is None:
        grid = input_grid(anatomy, draw)
    else:
        anatomy = anatomy.around(grid)
    # draw.scan's rotation is in the grid already; scan_object takes its SNR, bias and noise.
    image = scan_object(anatomy, tissue_object(anatomy, _tissue_signals(anatomy, draw)), grid,
                        draw.scan)  # fmt: skip
    inside = image > 0
    if draw.mask_margin_mm:
        steps = max(1, round(abs(draw.mask_margin_mm) / min(draw.voxel_size)))
        change = ndimage.binary_dilation if draw.mask_margin_mm > 0 else ndimage.binary_erosion
        inside = change(inside, iterations=steps)
    top = float(np.percentile(image[image > 0], 99.5)) if (image > 0).any() else 1.0
    scaled = np.clip(image / top, 0.0, None) ** draw.gamma * top
    # Grown masks let some of the scan's noise floor in, as a loose skull strip would.
    noise = np.random.default_rng(draw.scan.noise_seed + 1)
    floor = np.abs(noise.normal(0.0, top / draw.scan.snr, image.shape))
    return np.where(inside, np.where(image > 0, scaled, floor), 0.0).astype(np.float32), grid.affine
