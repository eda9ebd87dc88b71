"""Inference: the :class:`Synthesizer` API, file and BIDS batch output, the patch machinery."""

from tumsyn.infer.files import SynthesizedFile, synthesize_file
from tumsyn.infer.options import SynthesisOptions
from tumsyn.infer.synthesizer import SynthesizedImage, Synthesizer
from tumsyn.infer.volume import plan_patches, synthesize_volume

__all__ = [
    "SynthesisOptions",
    "SynthesizedFile",
    "SynthesizedImage",
    "Synthesizer",
    "plan_patches",
    "synthesize_file",
    "synthesize_volume",
]
