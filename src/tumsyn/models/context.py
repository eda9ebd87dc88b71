"""Input context: what the whole input image tells stage 2 about its own contrast.

The prompt says which contrast to make, not which one came in. A tumsyn-tiny patch encoder sees
about 23 voxels, too little to tell from intensities alone which tissue is bright: trained on
inputs of every contrast, it averages the mappings away and its outputs lose grey/white contrast
(docs/decisions.md). SynthSR answers with a U-Net whose view spans the brain; tumsyn keeps the
paper's small-receptive-field encoder and adds a second, global path instead:

:class:`ThumbnailFiLM` reads a thumbnail of the whole input (:func:`~tumsyn.data.volumes.
input_thumbnail`), pools it to one vector, and turns that into a per-channel scale and shift of
the encoder's features (FiLM, Perez et al. 2018). The thumbnail is the same for every patch of an
image, so whole-volume synthesis stays seamless; its last layer starts at zero, so a model
initialised from one without context starts out computing exactly what that model did.
"""

from __future__ import annotations

import torch
from pydantic import PositiveInt
from torch import nn

from tumsyn.config import StrictConfig

__all__ = ["ContextConfig", "ThumbnailFiLM"]


class ContextConfig(StrictConfig):
    """The input-context path of a synthesis network (``synth``'s ``context``)."""

    size: PositiveInt = 32  # thumbnail edge in voxels
    widths: tuple[PositiveInt, ...] = (8, 16, 32)  # channels of its stride-2 convolutions


class ThumbnailFiLM(nn.Module):
    """Thumbnail ``(B, 1, S, S, S)`` -> FiLM parameters; :meth:`modulate` applies them.

    Args:
        channels: the feature channels to modulate.
        widths: channels of the stride-2 3x3x3 convolutions that read the thumbnail.
        size: the thumbnail edge the network was trained with (checked on every call).
    """

    def __init__(self, channels: int, widths: tuple[int, ...], size: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = 1
        for width in widths:
            layers += [nn.Conv3d(previous, width, 3, stride=2, padding=1), nn.GELU()]
            previous = width
        self.reader = nn.Sequential(*layers)
        self.film = nn.Linear(previous, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.size = size

    def forward(self, thumbnail: torch.Tensor) -> torch.Tensor:
        """The scale and shift ``(B, 2C)`` of a batch of thumbnails."""
        expected = (1, self.size, self.size, self.size)
        if thumbnail.ndim != 5 or tuple(thumbnail.shape[1:]) != expected:
            raise ValueError(
                f"expected input thumbnails of shape (B, {', '.join(map(str, expected))}), got "
                f"{tuple(thumbnail.shape)}"
            )
        return self.film(self.reader(thumbnail).mean(dim=(2, 3, 4)))

    @staticmethod
    def modulate(feat: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """``feat * (1 + scale) + shift`` per channel (``film`` from :meth:`forward`)."""
        scale, shift = film[:, :, None, None, None].chunk(2, dim=1)
        return feat * (1 + scale) + shift
