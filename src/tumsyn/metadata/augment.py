"""Training prompts varied in what the training images cannot show.

Stage 1 resamples every volume to one coarse spacing, so its image encoder cannot tell a 1 mm scan
from a 3 mm one, nor a 30-year-old's from a 70-year-old's by the prompt's words. Varying these
words per sample teaches the text encoder that they do not change the contrast, instead of leaving
it to meet a voxel size at inference that it never read: the first shipped model's text tower,
trained on 2 mm prompts only, put a 1 mm T2w prompt nearer other contrasts than the 2 mm T2w.
Stage 2's generated targets draw their voxel sizes the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from tumsyn.config import StrictConfig
from tumsyn.metadata.prompt import format_prompt, prompt_without_subject
from tumsyn.metadata.record import ImagingMetadata

if TYPE_CHECKING:
    import numpy as np

__all__ = ["PromptAugmentation", "random_prompt_voxel_size"]


def random_prompt_voxel_size(
    rng: np.random.Generator, bounds: tuple[float, float], anisotropic: float
) -> tuple[float, float, float]:
    """A voxel size for a training prompt: uniform in ``bounds`` mm, isotropic, or with probability
    ``anisotropic`` one size per axis, in 0.1 mm steps.

    0.1 mm steps are how users write voxel sizes, and three two-decimal sizes can push a long
    prompt past the text encoder's 90 tokens.
    """
    sizes = rng.uniform(*bounds, size=3)
    if rng.random() >= anisotropic:
        sizes[:] = sizes[0]
    return tuple(round(float(v), 1) for v in sizes)  # type: ignore[return-value]


class PromptAugmentation(StrictConfig):
    """How a stage-1 training prompt is varied per sample."""

    voxel_size: tuple[float, float] | None = (0.7, 3.0)  # mm; None keeps the recorded size
    anisotropic: float = Field(default=0.3, ge=0.0, le=1.0)  # one size per axis, this often
    subject_dropout: float = Field(default=0.0, ge=0.0, le=1.0)  # age and sex left out

    def prompt(self, metadata: ImagingMetadata, rng: np.random.Generator) -> str:
        """The prompt of ``metadata`` with a random voxel size and maybe without age and sex."""
        if self.voxel_size is not None:
            size = random_prompt_voxel_size(rng, self.voxel_size, self.anisotropic)
            metadata = metadata.replace(voxel_size=size)
        text = format_prompt(metadata)
        return prompt_without_subject(text) if rng.random() < self.subject_dropout else text
