"""Downstream morphometry: segment GM/WM/CSF on a synthesized and a true image and compare them.

The TUMSyn paper checks that synthesized images are usable for the analyses they stand in for: the
synthesized image and the acquired image of the same contrast are both segmented into tissues, and
the segmentations are compared (Dice per tissue, tissue volumes, regional volumes).

Why ANTsPy's Atropos: the paper uses SynthSeg/FreeSurfer, which are not pip-installable and need
model or atlas downloads. Atropos (Avants et al. 2011) is the tissue segmentation of the maintained
ANTs toolkit, a standard in neuroimaging, shipped as a pip wheel (``antspyx``) and needs no
templates, priors or downloads: it runs offline on any single-contrast image.

How it is run: a 3-class finite mixture initialised by k-means on the intensities inside the brain
mask, refined by EM with a light Markov random field prior (smoothing 0.1, radius 1 voxel) so that
isolated noisy voxels do not flip class. k-means only knows intensities, so its classes come out
sorted from darkest to brightest; which tissue is darkest depends on the contrast (CSF in T1w, WM in
T2w), so the classes are named by :data:`TISSUE_ORDER`. The order is checked on each image by the
classes' mean intensities rather than taken from Atropos's numbering.

Reproducibility: k-means initialisation is deterministic, so the same image, mask and thread count
give the same labels. ITK splits the work over ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` threads (all
cores by default) and a different count can move a handful of borderline voxels (1 of ~24,000 in a
noisy test phantom, 1 vs 2 threads); set that variable to compare runs bit for bit across machines.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from tumsyn.errors import ImageError, MetadataError

__all__ = [
    "LABELS",
    "TISSUE_ORDER",
    "compare_segmentations",
    "dice",
    "regional_volumes",
    "segment_tissues",
    "tissue_volumes",
]

# Label values of the segmentations; 0 is background (outside the brain mask).
LABELS: dict[str, int] = {"CSF": 1, "GM": 2, "WM": 3}

# Tissues from darkest to brightest mean intensity in a typical adult brain image of each contrast.
# T1-weighted contrasts put CSF darkest and WM brightest; T2-, PD-, T2*- and susceptibility-weighted
# ones reverse that (WM has the shortest T2/T2* and the least water); FLAIR nulls CSF but keeps the
# T2 weighting, so GM is brighter than WM.
TISSUE_ORDER: dict[str, tuple[str, str, str]] = {
    "T1w": ("CSF", "GM", "WM"),
    "T1CE": ("CSF", "GM", "WM"),
    "T2w": ("WM", "GM", "CSF"),
    "FLAIR": ("CSF", "WM", "GM"),
    "PD": ("WM", "GM", "CSF"),
    "T2star": ("WM", "GM", "CSF"),
    "SWI": ("WM", "GM", "CSF"),
}

_N_CLASSES = 3


def _brain_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != shape:
        raise ImageError(f"the mask has shape {mask.shape}, the image {shape}: they must match")
    if not mask.any():
        raise ImageError("the brain mask is empty: there is nothing to segment")
    return mask


@contextmanager
def _scratch_tempdir() -> Iterator[None]:
    """Send temporary files to a folder deleted afterwards.

    ``ants.atropos`` writes its class probability images to ``tempfile.gettempdir()`` and never
    deletes them (three whole volumes per call); pointing ``tempfile.tempdir`` at a scratch folder
    for the call keeps them from piling up. The previous setting is restored.
    """
    previous = tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="tumsyn-atropos-") as scratch:
        tempfile.tempdir = scratch
        try:
            yield
        finally:
            tempfile.tempdir = previous


def segment_tissues(
    image: np.ndarray,
    mask: np.ndarray,
    modality: str,
    *,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    iterations: int = 5,
    mrf: float = 0.1,
) -> np.ndarray:
    """Segment CSF, GM and WM inside ``mask`` with Atropos (k-means initialised, light MRF).

    Args:
        image: the (I, J, K) image to segment, skull-stripped or not (only ``mask`` is used).
        mask: the (I, J, K) brain mask; non-zero voxels are segmented.
        modality: a key of :data:`TISSUE_ORDER`; it names the intensity-sorted classes.
        spacing: voxel size in mm along the three array axes (it scales the MRF neighbourhood).
        iterations: EM iterations (run in full: the convergence threshold is 0).
        mrf: the MRF smoothing factor; 0 turns the spatial prior off.

    Returns:
        an (I, J, K) int8 volume: 0 outside the mask, then :data:`LABELS` (1 CSF, 2 GM, 3 WM).
    """
    import ants

    if modality not in TISSUE_ORDER:
        raise MetadataError(
            f"unknown modality {modality!r}: expected one of {', '.join(TISSUE_ORDER)}"
        )
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ImageError(f"the image must be 3D (I, J, K), got {image.ndim}D {image.shape}")
    mask = _brain_mask(mask, image.shape)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ImageError(f"spacing must be three positive voxel sizes, got {tuple(spacing)}")

    if np.unique(image[mask]).size < _N_CLASSES:
        raise ImageError(
            f"the image has fewer than {_N_CLASSES} distinct intensities inside the mask: "
            "there are no tissues to tell apart"
        )
    spacing = tuple(float(s) for s in spacing)
    ants_image = ants.from_numpy(image, spacing=spacing)
    ants_mask = ants.from_numpy(mask.astype(np.float32), spacing=spacing)
    with _scratch_tempdir():
        result = ants.atropos(
            a=ants_image,
            x=ants_mask,
            i=f"kmeans[{_N_CLASSES}]",
            m=f"[{mrf},1x1x1]",
            c=f"[{iterations},0]",
        )
    classes = np.rint(result["segmentation"].numpy()).astype(np.int64)
    return _name_classes(image, classes, mask, TISSUE_ORDER[modality])


def _name_classes(
    image: np.ndarray, classes: np.ndarray, mask: np.ndarray, order: tuple[str, str, str]
) -> np.ndarray:
    """Map Atropos classes to tissue labels by the classes' own mean intensities.

    Sorting by measured means (an empty class counts as brightest) keeps the naming right even if
    Atropos's class numbering were ever not intensity-ordered.
    """
    means = [
        float(image[(classes == k) & mask].mean()) if np.any((classes == k) & mask) else np.inf
        for k in range(1, _N_CLASSES + 1)
    ]
    labels = np.zeros(image.shape, dtype=np.int8)
    for rank, k in enumerate(np.argsort(means, kind="stable") + 1):
        labels[(classes == k) & mask] = LABELS[order[rank]]
    return labels


def dice(a_labels: np.ndarray, b_labels: np.ndarray) -> dict[str, float]:
    """Dice overlap 2|A∩B| / (|A| + |B|) per tissue; 1.0 where the tissue is absent from both."""
    a_labels, b_labels = np.asarray(a_labels), np.asarray(b_labels)
    if a_labels.shape != b_labels.shape:
        raise ImageError(f"label volumes differ in shape: {a_labels.shape} and {b_labels.shape}")
    scores = {}
    for tissue, value in LABELS.items():
        a, b = a_labels == value, b_labels == value
        total = int(a.sum()) + int(b.sum())
        scores[tissue] = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
    return scores


def tissue_volumes(labels: np.ndarray, voxel_volume_ml: float) -> dict[str, float]:
    """Volume of each tissue in millilitres (voxel count times ``voxel_volume_ml``)."""
    labels = np.asarray(labels)
    return {
        tissue: float(np.count_nonzero(labels == value)) * voxel_volume_ml
        for tissue, value in LABELS.items()
    }


def _octant_indices(mask: np.ndarray) -> list[np.ndarray]:
    """Per axis, 0 below the mask's bounding-box midpoint and 1 from it on (a lower half of
    ``length // 2`` voxels)."""
    halves = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        inside = np.flatnonzero(mask.any(axis=other))
        middle = inside[0] + (inside[-1] - inside[0] + 1) // 2
        halves.append((np.arange(mask.shape[axis]) >= middle).astype(np.int64))
    return halves


def regional_volumes(
    labels: np.ndarray, mask: np.ndarray, voxel_volume_ml: float
) -> dict[str, float]:
    """Tissue volume (ml) in each octant of the brain mask's bounding box: 24 values.

    Why octants: no atlas parcellation can be downloaded at run time, and an octant split of the
    bounding box is fixed and reproducible, and coarse enough that a registration-free comparison
    of two images of one subject on one grid is meaningful. Keys are ``"<tissue>/x<i>y<j>z<k>"``
    with i, j, k = 0 for the half of lower array indices along axes 0, 1, 2 (which anatomical side
    that is depends on the image orientation). Only voxels inside ``mask`` count.
    """
    labels = np.asarray(labels)
    mask = _brain_mask(mask, labels.shape)
    hx, hy, hz = _octant_indices(mask)
    octant = hx[:, None, None] * 4 + hy[None, :, None] * 2 + hz[None, None, :]
    volumes = {}
    for tissue, value in LABELS.items():
        counts = np.bincount(octant[(labels == value) & mask], minlength=8)
        for index, count in enumerate(counts):
            key = f"{tissue}/x{index >> 2 & 1}y{index >> 1 & 1}z{index & 1}"
            volumes[key] = float(count) * voxel_volume_ml
    return volumes


def _percent_difference(pred: float, truth: float) -> float:
    """100 (pred - truth) / truth; 0 when both are 0, ±inf when only the truth is 0."""
    if truth == 0:
        return 0.0 if pred == 0 else float(np.copysign(np.inf, pred))
    return 100.0 * (pred - truth) / truth


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's r; nan when either side is constant (the correlation is undefined)."""
    x, y = x - x.mean(), y - y.mean()
    denominator = float(np.sqrt((x**2).sum() * (y**2).sum()))
    return float("nan") if denominator == 0 else float((x * y).sum() / denominator)


def compare_segmentations(
    pred_labels: np.ndarray, truth_labels: np.ndarray, mask: np.ndarray, voxel_volume_ml: float
) -> dict[str, float]:
    """Compare the segmentation of a synthesized image with that of the true image.

    Returns ``dice_<tissue>``, ``volume_difference_<tissue>_percent`` (100 (pred - truth) / truth;
    0 if both volumes are 0, ±inf if only the truth's is) and ``regional_volume_r``, Pearson's r
    of the 24 octant volumes of :func:`regional_volumes` (nan if either set is constant, where r is
    undefined).
    """
    scores = {f"dice_{tissue}": value for tissue, value in dice(pred_labels, truth_labels).items()}
    pred_volumes = tissue_volumes(pred_labels, voxel_volume_ml)
    truth_volumes = tissue_volumes(truth_labels, voxel_volume_ml)
    for tissue in LABELS:
        scores[f"volume_difference_{tissue}_percent"] = _percent_difference(
            pred_volumes[tissue], truth_volumes[tissue]
        )
    pred_regions = regional_volumes(pred_labels, mask, voxel_volume_ml)
    truth_regions = regional_volumes(truth_labels, mask, voxel_volume_ml)
    scores["regional_volume_r"] = _pearson(
        np.array(list(pred_regions.values())), np.array([truth_regions[k] for k in pred_regions])
    )
    return scores
