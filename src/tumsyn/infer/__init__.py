"""Inference: whole-volume synthesis from a source image and a target prompt."""

from tumsyn.infer.volume import plan_patches, synthesize_volume

__all__ = ["plan_patches", "synthesize_volume"]
