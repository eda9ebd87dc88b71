"""Evaluation: image-quality metrics as the paper computes them."""

from tumsyn.evaluate.metrics import normalise, psnr, ssim

__all__ = ["normalise", "psnr", "ssim"]
