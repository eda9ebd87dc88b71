"""From an ideal 1 mm object to an acquired image: point-spread function, grid, bias, noise.

- **Point-spread function.** A voxel of size ``v`` averages the object over about ``v``: along
  in-plane and 3D axes a Gaussian with FWHM ``v``; along the slice axis of a 2D acquisition (a
  voxel side at least twice the smallest) the slice profile, a box of width ``v``. The 1 mm object
  already carries about 1 mm of blur, so only the difference (in quadrature for the Gaussian) is
  added. For oblique grids each target axis is blurred along the object axis closest to it.
- **Grid.** The blurred object is sampled (trilinear) at the target voxel centres.
- **Bias field.** Receive-coil sensitivity: a smooth multiplicative field, ``exp`` of a random
  quadratic polynomial of position.
- **Noise.** Rician: complex Gaussian noise of standard deviation ``sigma`` added to the signal,
  magnitude taken.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from tumsyn.io import Grid
from tumsyn.resample import resample

__all__ = ["acquire", "bias_field", "box_kernel", "rician_noise", "rotated_grid"]

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))
_SLICE_ANISOTROPY = 2.0


def box_kernel(width: float) -> np.ndarray:
    """A normalised box of ``width`` voxels, fractional edges included (overlap per voxel)."""
    half = width / 2.0
    taps = np.arange(-int(np.ceil(half)), int(np.ceil(half)) + 1)
    weights = np.clip(np.minimum(taps + 0.5, half) - np.maximum(taps - 0.5, -half), 0.0, None)
    return weights / weights.sum()


def _blur(volume: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    steps = np.linalg.solve(source.affine[:3, :3], target.affine[:3, :3])  # target axis -> source
    extents = np.linalg.norm(steps, axis=0)  # target voxel sides, in source voxels
    sizes = np.asarray(target.voxel_size)
    blurred = volume
    for axis in range(3):
        along = int(np.argmax(np.abs(steps[:, axis])))
        width = float(extents[axis])
        if width <= 1.0:
            continue
        if sizes[axis] >= _SLICE_ANISOTROPY * sizes.min():
            kernel = box_kernel(width)
            blurred = ndimage.convolve1d(blurred, kernel.astype(np.float32), axis=along)
        else:
            sigma = np.sqrt(width**2 - 1.0) * _FWHM_TO_SIGMA
            blurred = ndimage.gaussian_filter1d(blurred, sigma, axis=along, mode="constant")
    return blurred


def acquire(volume: np.ndarray, source: Grid, target: Grid) -> np.ndarray:
    """The noise-free image of ``volume`` (an object on the 1 mm ``source`` grid) on ``target``."""
    return resample(_blur(volume, source, target), source, target)


def rotated_grid(grid: Grid, angles_deg: Sequence[float]) -> Grid:
    """``grid`` rotated about its centre by angles (degrees) about the world x, y and z axes."""
    ax, ay, az = np.deg2rad(np.asarray(angles_deg, dtype=float))
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    rotation = np.eye(4)
    rotation[:3, :3] = rz @ ry @ rx
    centre = grid.affine @ np.append((np.asarray(grid.shape) - 1) / 2.0, 1.0)
    to_centre, back = np.eye(4), np.eye(4)
    to_centre[:3, 3] = -centre[:3]
    back[:3, 3] = centre[:3]
    return Grid(grid.shape, back @ rotation @ to_centre @ grid.affine)


def bias_field(shape: Sequence[int], coefficients: np.ndarray) -> np.ndarray:
    """``exp`` of a quadratic polynomial of position (coordinates scaled to [-1, 1]).

    Args:
        coefficients: 9 numbers, for x, y, z, x^2, y^2, z^2, xy, xz, yz.
    """
    x, y, z = (np.linspace(-1.0, 1.0, n, dtype=np.float32) for n in shape)
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    c = np.asarray(coefficients, dtype=np.float32)
    log_field = (
        c[0] * x + c[1] * y + c[2] * z + c[3] * x * x + c[4] * y * y + c[5] * z * z
        + c[6] * x * y + c[7] * x * z + c[8] * y * z
    )  # fmt: skip
    return np.exp(log_field).astype(np.float32)


def rician_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of ``image`` plus complex Gaussian noise of standard deviation ``sigma``."""
    real = image + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(image.shape, dtype=np.float32) * np.float32(sigma)
    return np.hypot(real, imaginary)
