"""PSNR and SSIM as the TUMSyn paper reports them.

Both images are min-max normalised to [0, 1] inside the brain mask, with the 99.5th percentile as
the maximum (values above are clipped), then compared inside the mask. SSIM is scikit-image's
(Gaussian window, sigma 1.5, as Wang et al. 2004), computed in 3D and averaged over the mask.
MAE and the tissue contrast errors compare the same normalised images.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy import ndimage

__all__ = [
    "contrast_errors",
    "dark_to_bright_ratio",
    "eroded",
    "mae",
    "normalise",
    "psnr",
    "ssim",
    "tissue_means",
]

_UPPER_PERCENTILE = 99.5


def _mask(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return image > 0 if mask is None else np.asarray(mask, dtype=bool)


def eroded(mask: np.ndarray, voxels: int) -> np.ndarray:
    """The voxels of ``mask`` at least ``voxels`` voxels inside its edge (``mask`` itself for 0).
    The paper's normalisation maps each image's minimum in the mask to 0, so a few dark edge
    voxels move every score; scoring inside the edge shows how much a comparison rests on it."""
    return ndimage.binary_erosion(mask, iterations=voxels) if voxels else mask


def normalise(image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` scaled to [0, 1]: 0 at the mask's minimum, 1 at its 99.5th percentile."""
    image = np.asarray(image, dtype=np.float32)
    inside = image[_mask(image, mask)]
    if inside.size == 0:
        raise ValueError("the mask is empty: nothing to normalise")
    low, high = float(inside.min()), float(np.percentile(inside, _UPPER_PERCENTILE))
    scaled = (image - low) / max(high - low, np.finfo(np.float32).eps)
    return np.clip(scaled, 0.0, 1.0)


def psnr(reference: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of normalised images inside ``mask`` (default: ref > 0)."""
    mask = _mask(reference, mask)
    error = np.mean((normalise(reference, mask)[mask] - normalise(image, mask)[mask]) ** 2)
    return float("inf") if error == 0 else float(10.0 * np.log10(1.0 / error))


def ssim(reference: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity of normalised images, averaged inside ``mask`` (default: ref > 0)."""
    from skimage.metrics import structural_similarity

    mask = _mask(reference, mask)
    _, local = structural_similarity(
        normalise(reference, mask),
        normalise(image, mask),
        data_range=1.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=True,
    )
    return float(local[mask].mean())


def mae(reference: np.ndarray, image: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error of normalised images inside ``mask`` (default: ref > 0).

    On the same [0, 1] scale as :func:`psnr`, so it reads as a fraction of the intensity range and
    weighs a few large errors less than PSNR's squared error does.
    """
    mask = _mask(reference, mask)
    difference = normalise(reference, mask)[mask] - normalise(image, mask)[mask]
    return float(np.mean(np.abs(difference)))


def tissue_means(
    image: np.ndarray, tissues: Mapping[str, np.ndarray], mask: np.ndarray | None = None
) -> dict[str, float]:
    """Mean intensity of ``image`` in each tissue, weighted by the tissue's map, inside ``mask``.

    Args:
        image: the image, shape ``(I, J, K)``.
        tissues: name -> map of the same shape: a 0/1 label mask or a probability map (weights
            in [0, 1]), so hard segmentations and soft ones (SPM, FAST) are used alike.
        mask: where to look (default: everywhere).

    Raises:
        ValueError: a map has the wrong shape, negative weights, or no weight inside the mask.
    """
    image = np.asarray(image, dtype=np.float64)
    inside = np.ones(image.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    means = {}
    for name, weights in tissues.items():
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != image.shape:
            raise ValueError(f"the {name} map has shape {weights.shape}, the image {image.shape}")
        if np.any(weights < 0):
            raise ValueError(f"the {name} map has negative weights; expected labels or [0, 1]")
        weights = np.where(inside, weights, 0.0)
        total = weights.sum()
        if total == 0:
            raise ValueError(f"the {name} map is empty inside the mask: no {name} to measure")
        means[name] = float((weights * image).sum() / total)
    return means


def contrast_errors(
    reference: np.ndarray,
    image: np.ndarray,
    tissues: Mapping[str, np.ndarray],
    mask: np.ndarray | None = None,
    lesions: np.ndarray | None = None,
) -> dict[str, float]:
    """Relative errors of the GM/WM and CSF/WM mean-intensity ratios of ``image`` vs ``reference``.

    PSNR and SSIM can be good while the tissue contrast is wrong (a T2w that looks like a PD); these
    ratios say so directly. Both images are normalised as for :func:`psnr` first, so an intensity
    offset of the synthesis does not count, and each ratio's error is ``image ratio / reference
    ratio - 1``: signed, so a positive GM/WM error means too much GM brightness relative to WM.

    Args:
        tissues: ``{"GM": ..., "WM": ..., "CSF": ...}``, the reference's label or probability maps
            (see :func:`tissue_means`).
        mask: brain mask (default: ref > 0).
        lesions: a lesion map (white-matter hyperintensities, enhancing lesions): adds the
            error of the lesion/WM ratio, which says whether lesions stand out as they should
            (a FLAIR that leaves them grey can still have good tissue ratios).

    Returns:
        ``{"gm_wm": error, "csf_wm": error}``, and ``"lesion_wm"`` with ``lesions``.
    """
    missing = sorted({"GM", "WM", "CSF"} - set(tissues))
    if missing:
        raise ValueError(f"tissue maps {', '.join(missing)} are missing; need GM, WM and CSF")
    mask = _mask(reference, mask)
    pairs = [("gm_wm", "GM"), ("csf_wm", "CSF")]
    if lesions is not None:
        tissues = {**tissues, "lesion": lesions}
        pairs.append(("lesion_wm", "lesion"))
    truth = tissue_means(normalise(reference, mask), tissues, mask)
    predicted = tissue_means(normalise(image, mask), tissues, mask)
    errors = {}
    for name, tissue in pairs:
        if truth["WM"] == 0 or predicted["WM"] == 0 or truth[tissue] == 0:
            raise ValueError(f"{tissue}/WM ratio undefined: a mean intensity is 0")
        ratio = (predicted[tissue] / predicted["WM"]) / (truth[tissue] / truth["WM"])
        errors[name] = float(ratio - 1.0)
    return errors


def dark_to_bright_ratio(
    image: np.ndarray, reference: np.ndarray, low: float = 10.0, high: float = 90.0
) -> float:
    """Mean of ``image`` where the co-registered ``reference`` is darkest (below its ``low``
    percentile) over its mean where ``reference`` is brightest (above ``high``), inside the
    reference's non-zero voxels.

    With a T1w reference those are mostly CSF and white matter, so the ratio tells apart
    contrasts without a segmentation: a FLAIR's CSF is dark (ratio < 1), a T2w's bright (> 1).
    """
    inside = reference != 0
    bottom, top = np.percentile(reference[inside], [low, high])
    dark = image[inside & (reference < bottom)].mean()
    bright = image[inside & (reference > top)].mean()
    return float(dark / bright)
