"""Imaging a virtual subject with a protocol: the exact truth, and a realistic scan.

:func:`render` gives the noise-free, bias-free image that a protocol (an :class:`ImagingMetadata`:
modality, field strength, TR/TE/TI/flip angle, voxel size) would show: the ground truth that a
synthesized image is compared with. :func:`scan` adds what a scanner adds (bias field, Rician
noise). Both are brain-extracted: voxels outside the brain are 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tumsyn.errors import MetadataError
from tumsyn.io import Grid, target_grid
from tumsyn.metadata import ImagingMetadata
from tumsyn.resample import resample
from tumsyn.simulate.acquisition import acquire, bias_field, rician_noise, rotated_grid
from tumsyn.simulate.anatomy import Anatomy
from tumsyn.simulate.sequences import signal

__all__ = [
    "ScanSettings",
    "draw_scan_settings",
    "render",
    "render_on",
    "scan",
    "scan_grid",
    "scan_object",
    "tissue_object",
]

#: Images are in arbitrary units: a pure-CSF proton density of 1 becomes this value.
INTENSITY_SCALE = 1000.0


@dataclass(frozen=True)
class ScanSettings:
    """What a scan adds to the truth: noise level, coil bias, head orientation."""

    snr: float = 40.0  # mean brain signal / noise standard deviation
    bias: tuple[float, ...] = (0.0,) * 9  # bias-field polynomial coefficients
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise_seed: int = 0


def draw_scan_settings(
    rng: np.random.Generator,
    *,
    snr: float | tuple[float, float] = (25.0, 60.0),
    bias: float = 0.12,
    oblique_deg: float = 0.0,
) -> ScanSettings:
    """Random scan settings: SNR (a value or a range), bias strength, oblique angles."""
    low, high = (snr, snr) if np.isscalar(snr) else snr
    return ScanSettings(
        snr=float(rng.uniform(low, high)),
        bias=tuple(float(c) for c in rng.normal(0.0, bias, 9)),
        rotation_deg=tuple(float(a) for a in rng.uniform(-oblique_deg, oblique_deg, 3)),
        noise_seed=int(rng.integers(2**31)),
    )


def scan_grid(
    anatomy: Anatomy,
    voxel_size: Sequence[float] | None,
    rotation_deg: Sequence[float] = (0.0, 0.0, 0.0),
) -> Grid:
    """The grid a protocol images: the subject's field of view at the protocol's voxel size."""
    if voxel_size is None:
        raise MetadataError("the protocol needs a voxel size to be simulated")
    grid = target_grid(anatomy.grid, voxel_size)
    return rotated_grid(grid, rotation_deg) if any(rotation_deg) else grid


def _object(anatomy: Anatomy, metadata: ImagingMetadata) -> np.ndarray:
    """The ideal 1 mm magnitude image: tissue signals weighted by fraction, summed, magnitude."""
    return tissue_object(anatomy, signal(anatomy.properties(metadata.field_strength), metadata))


def _brain_mask(anatomy: Anatomy, grid: Grid) -> np.ndarray:
    return resample(anatomy.brain, anatomy.grid, grid) > 0.5


def render_on(anatomy: Anatomy, metadata: ImagingMetadata, grid: Grid) -> np.ndarray:
    """The noise-free image of a protocol on any grid (e.g. the grid of an image to compare)."""
    image = acquire(_object(anatomy, metadata), anatomy.grid, grid)
    return np.where(_brain_mask(anatomy, grid), image, np.float32(0))


def render(anatomy: Anatomy, metadata: ImagingMetadata) -> tuple[np.ndarray, np.ndarray]:
    """The exact truth of a protocol: noise-free, bias-free image and its affine.

    The grid covers the subject's field of view at ``metadata.voxel_size``.
    """
    grid = scan_grid(anatomy, metadata.voxel_size)
    return render_on(anatomy, metadata, grid), grid.affine


def scan(
    anatomy: Anatomy, metadata: ImagingMetadata, settings: ScanSettings = ScanSettings()
) -> tuple[np.ndarray, np.ndarray]:
    """A realistic acquisition: truth times a coil bias field, Rician noise, brain-extracted."""
    grid = scan_grid(anatomy, metadata.voxel_size, settings.rotation_deg)
    return scan_object(anatomy, _object(anatomy, metadata), grid, settings), grid.affine


def tissue_object(anatomy: Anatomy, signals: np.ndarray) -> np.ndarray:
    """The ideal 1 mm image of any per-tissue signals (one per class, in units of the pure-CSF
    proton density): how randomised contrasts are imaged, through the same path as protocols."""
    per_tissue = np.asarray(signals, dtype=np.float32) * np.float32(INTENSITY_SCALE)
    return np.abs(np.tensordot(per_tissue, anatomy.fractions, axes=1))


def scan_object(
    anatomy: Anatomy, image: np.ndarray, grid: Grid, settings: ScanSettings
) -> np.ndarray:
    """Acquire a 1 mm object image on ``grid``: voxel kernel, coil bias, Rician noise, masked."""
    truth = acquire(image, anatomy.grid, grid)
    mask = _brain_mask(anatomy, grid)
    sigma = float(truth[mask].mean()) / settings.snr if mask.any() else 0.0
    biased = truth * bias_field(grid.shape, np.asarray(settings.bias))
    noisy = rician_noise(biased, sigma, np.random.default_rng(settings.noise_seed))
    return np.where(mask, noisy, np.float32(0))
