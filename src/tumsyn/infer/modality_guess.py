"""Which network reads an input whose modality nobody named: a guess from its intensities.

A model with a network per input modality (model v2, :mod:`tumsyn.models.routed`) reads a T2w
with its T2w network only if it knows the input is a T2w: from the caller, else from the file
name. Without either it would read the input with its fallback (T1w) network, and a T2w read as
a T1w comes out with bright ventricles. An input named with a modality the model has no network
for (a T2*w) is guessed the same way, so that the network whose inputs it looks like reads it.
Nothing in an array or in ``input_0000.nii.gz`` says what it is, but its intensities do, where
anatomy makes the contrasts differ most, and that needs no segmentation (none is at hand before
synthesis):

- the **core**, tissue 15 mm or more inside the brain's edge: white matter and the lateral
  ventricles (with the deep grey nuclei);
- the **shell**, the outer 4 mm: cortex and sulcal CSF.

A T2w's core is darker than its shell (white matter is its darkest tissue) and its ventricles are
far brighter than white matter. A PD's CSF is not dark (nearly grey matter's level), while T1w
and FLAIR images darken or null it, and its core is not much brighter than its shell. Every other
input (T1w, T1CE, FLAIR) looks T1-like and keeps the fallback: a FLAIR's faint grey/white step
does not outweigh the dark sulcal CSF of its shell (its core/shell ratios overlap a T1w's), so
these rules cannot send it to model v2's FLAIR network. T2*w and SWI inputs, which have
no network of their own, mostly look like PD to these rules (CSF not dark) and are read as PD.

The thresholds come from simulated scans of every packaged protocol (three subjects, 1-3 mm and
thick slices, SNR 8-60, strong bias fields) and the real-derived images at hand (T1w; the
ICBM152 T2 template):
``benchmarks/exp_modality_guess.py`` regenerates the table (docs/decisions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["IntensityFeatures", "ModalityGuess", "guess_input_modality"]

CORE_DEPTH_MM = 15.0  # white matter and ventricles lie deeper than this below the brain's edge
SHELL_DEPTH_MM = 4.0  # cortex and sulcal CSF lie within this of it
WORKING_VOXEL_MM = 2.0  # the guess reads the image subsampled to about this voxel size
MIN_VOXELS = 500  # fewer voxels in the core or the shell: no guess (a crop, not a brain)
MAX_BORDER_FRACTION = 0.05  # more non-zero voxels on the array's faces: not brain-extracted
# Simulated scans (benchmarks/exp_modality_guess.py, 375 scans): T2w core/shell 0.51-0.81 and
# ventricles 2.77-3.84 x the core's median; every other contrast 0.84 or more and 2.16 or less,
# and 1.78 or less where the core is also darker than the shell (PD, T2*w). The real ICBM152 T2
# template has core/shell 0.85 and ventricles 2.12 (a real T2w's CSF is less bright against white
# matter than the simulator's, docs/calibration.md), so the ventricle bound lies between 1.78
# and 2.12. The contrasts whose ventricles also pass it (T1w up to 2.06, FLAIR up to 2.16) have
# core/shell 1.13 or more, so the core/shell bound lies halfway between that and the real T2's
# 0.85: a dimmer-CSF T2w (a 1.5 T spin echo at TE 70 ms) reaches 0.90.
T2W_MAX_CORE_TO_SHELL = 1.0
T2W_MIN_VENTRICLES = 1.95
# PD: the core's darkest 2 % at 0.59-0.83 of its median, T1w's at 0.57 or less, T1CE's 0.60,
# FLAIR's 0.42; PD's core/shell 0.83-1.33, T1w's and T1CE's 1.27 or more (real T1w: Colin27
# 1.21 with darkest 0.31, the MNI152 example 1.65). Both must hold.
PD_MIN_DARKEST = 0.61
PD_MAX_CORE_TO_SHELL = 1.25


@dataclass(frozen=True)
class IntensityFeatures:
    """The three numbers the guess reads, each relative to the core's median."""

    core_to_shell: float  # the core's median over the shell's
    ventricles: float  # the core's 99th percentile: CSF where it is bright
    darkest: float  # the core's 2nd percentile: CSF where it is dark


@dataclass(frozen=True)
class ModalityGuess:
    """What an input's intensities say: ``modality`` (``"T2w"``, ``"PD"``, or ``None``: T1-like
    or no guess), why in words for a warning, and the ``features`` (``None``: not measurable)."""

    modality: str | None
    reason: str
    features: IntensityFeatures | None = None


def guess_input_modality(data: np.ndarray, voxel_size: tuple[float, float, float]) -> ModalityGuess:
    """Guess a brain-extracted 3D image's input modality from its core and shell intensities.

    Args:
        data: the image ``(I, J, K)``, zero outside the brain.
        voxel_size: its voxel size in mm, along the array's axes.
    """
    steps = tuple(max(1, int(WORKING_VOXEL_MM // size)) for size in voxel_size)
    image = np.asarray(data[:: steps[0], :: steps[1], :: steps[2]], dtype=np.float32)
    if _border_fraction(image) > MAX_BORDER_FRACTION:
        return ModalityGuess(None, "its background is not zero (not brain-extracted)")
    spacing = tuple(s * k for s, k in zip(voxel_size, steps, strict=True))
    features = _features(image, spacing)
    if features is None:
        return ModalityGuess(None, "too little brain to tell")
    ratio, ventricles, darkest = features.core_to_shell, features.ventricles, features.darkest
    if ratio < T2W_MAX_CORE_TO_SHELL and ventricles > T2W_MIN_VENTRICLES:
        reason = (f"deep tissue darker than the cortex ({ratio:.2f}) and ventricles "
                  f"{ventricles:.1f} x brighter than white matter")  # fmt: skip
        return ModalityGuess("T2w", reason, features)
    if darkest > PD_MIN_DARKEST and ratio < PD_MAX_CORE_TO_SHELL:
        reason = f"CSF not dark ({darkest:.2f} of white matter), little grey/white contrast"
        return ModalityGuess("PD", reason, features)
    return ModalityGuess(None, "T1-like: dark CSF or white matter brighter than cortex", features)


def _features(image: np.ndarray, spacing: tuple[float, ...]) -> IntensityFeatures | None:
    """The core's and shell's intensities of a brain-extracted image (``None``: too little of
    either, a crop rather than a brain)."""
    brain = ndimage.binary_fill_holes(image > 0)
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    core = image[(depth >= CORE_DEPTH_MM) & (image > 0)]
    shell = image[(depth <= SHELL_DEPTH_MM) & (image > 0)]
    if min(core.size, shell.size) < MIN_VOXELS:
        return None
    middle = float(np.median(core))
    ventricles, darkest = (float(v) / middle for v in np.percentile(core, [99, 2]))
    return IntensityFeatures(middle / float(np.median(shell)), ventricles, darkest)


def _border_fraction(image: np.ndarray) -> float:
    """The share of non-zero voxels on the array's six faces."""
    faces = [np.take(image, index, axis) for axis in range(3) for index in (0, -1)]
    return float(np.mean(np.concatenate([face.ravel() for face in faces]) != 0))
