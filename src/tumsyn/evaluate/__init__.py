"""Evaluation: image-quality metrics as the paper computes them, and reports over many images."""

from tumsyn.evaluate.metrics import contrast_errors, mae, normalise, psnr, ssim
from tumsyn.evaluate.report import EvaluationReport, evaluate, pair_folders

__all__ = [
    "EvaluationReport",
    "contrast_errors",
    "evaluate",
    "mae",
    "normalise",
    "pair_folders",
    "psnr",
    "ssim",
]
