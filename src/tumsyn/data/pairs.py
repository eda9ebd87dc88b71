"""Stage-2 training pairs: two images of one subject on one grid (source -> target).

The synthesis network learns voxel-to-voxel correspondences, so a pair is only usable when both
images are co-registered and resampled to the same grid. That is checked here, from the headers,
before any training starts: a mismatch found after hours of training would be far worse.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tumsyn.data.index import ImageRecord
from tumsyn.errors import ImageError
from tumsyn.io import read_grid

__all__ = ["paired_records"]

_AFFINE_TOLERANCE = 1e-3  # mm (translations) and mm per voxel (axes)


def paired_records(records: Sequence[ImageRecord]) -> list[tuple[ImageRecord, ImageRecord]]:
    """All ordered (source, target) pairs of different images of the same subject.

    A subject with ``n`` images gives ``n (n - 1)`` pairs (both directions, as the official code
    trains); a subject with one image gives none. Pairs are grouped by subject in order of first
    appearance, then in record order.

    Raises:
        ImageError: two images of a subject differ in shape or affine (``atol`` 1e-3), naming
            both files.
    """
    by_subject: dict[str, list[ImageRecord]] = {}
    for record in records:
        by_subject.setdefault(record.subject, []).append(record)
    pairs = []
    for subject, images in by_subject.items():
        if len(images) < 2:
            continue
        reference = read_grid(images[0].path)
        for other in images[1:]:
            grid = read_grid(other.path)
            same_shape = tuple(grid.shape) == tuple(reference.shape)
            if not same_shape or not np.allclose(
                grid.affine, reference.affine, rtol=0.0, atol=_AFFINE_TOLERANCE
            ):
                difference = (
                    f"shape {reference.shape} vs {grid.shape}"
                    if not same_shape
                    else "affines differ by up to "
                    f"{np.abs(grid.affine - reference.affine).max():.4g} mm"
                )
                raise ImageError(
                    f"{images[0].path} and {other.path} (subject {subject}) are not on the same "
                    f"grid ({difference}); co-register and resample a subject's images to one "
                    "grid before training"
                )
        pairs.extend(
            (source, target)
            for i, source in enumerate(images)
            for j, target in enumerate(images)
            if i != j
        )
    return pairs
