"""Shared fixtures: real NIfTI files on disk, written with nibabel."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import settings


@pytest.fixture
def write_nifti(tmp_path: Path) -> Callable[..., Path]:
    """Write an array as a NIfTI file with nibabel directly (independent of tumsyn.io)."""

    def write(data, name: str = "image.nii.gz", affine=None, dtype=np.float32) -> Path:
        path = tmp_path / name
        image = nib.Nifti1Image(
            np.asarray(data, dtype=dtype), np.eye(4) if affine is None else affine
        )
        nib.save(image, path)
        return path

    return write


@pytest.fixture
def brain_like() -> np.ndarray:
    """A 12x14x10 volume: a bright ellipsoid on zero background."""
    grid = np.indices((12, 14, 10)).astype(np.float32)
    centre = np.array([6, 7, 5], dtype=np.float32)[:, None, None, None]
    radius = np.array([4, 5, 3.5], dtype=np.float32)[:, None, None, None]
    inside = (((grid - centre) / radius) ** 2).sum(axis=0) <= 1
    return np.where(inside, 100.0 + grid[0], 0.0).astype(np.float32)


# CI runs the same examples every time (no flaky property failures); locally, hypothesis explores.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
