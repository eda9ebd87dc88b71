"""PSNR and SSIM as the TUMSyn paper reports them.

Both images are min-max normalised to [0, 1] inside the brain mask, with the 99.5th percentile as
the maximum (values above are clipped), then compared inside the mask. SSIM is scikit-image's
(Gaussian window, sigma 1.5, as Wang et al. 2004), computed in 3D and averaged over the mask.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dark_to_bright_ratio", "normalise", "psnr", "ssim"]

_UPPER_PERCENTILE = 99.5


def _mask(image: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return image > 0 if mask is None else np.asarray(mask, dtype=bool)


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
