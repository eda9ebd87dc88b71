"""The stage-2 image encoder: an EDSR-style 3D residual network without downsampling.

Lim B. et al., "Enhanced deep residual networks for single image super-resolution", CVPRW 2017,
in 3D as TUMSyn uses it: a head convolution, ``blocks`` residual blocks (conv-BN-ReLU-conv-BN,
scaled by ``res_scale`` before the skip), a convolution, a global skip, and a tail convolution to
``out_channels``. Every layer keeps the input's spatial size, so each voxel gets a feature vector.
Parameter names follow the official ``ResEncoder`` (``head.0``, ``body.i.body.j``, ``tail.0``).

An optional :class:`PooledContext` (``context.*``, not in the official network) adds what the
patch looks like at a coarser scale, for tissue that only wider context tells apart.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tumsyn.models.winograd import Conv3d3, reused_buffers

__all__ = ["PooledContext", "ResidualEncoder3D"]


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Conv3d3(channels, channels),
            nn.BatchNorm3d(channels),
            nn.ReLU(inplace=True),
            Conv3d3(channels, channels),
            nn.BatchNorm3d(channels),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class PooledContext(nn.Module):
    """Adds to each voxel's features those of its neighbourhood seen at ``1/factor`` resolution.

    Why: the full-resolution blocks see about 20 voxels across; the same blocks run on the
    average-pooled features see ``factor`` times farther at ``1/factor^3`` of the cost. The
    coarse features are upsampled trilinearly and added through a 1x1 convolution that starts at
    zero, so an encoder without this branch fine-tunes into one with it.

    Example:
        >>> context = PooledContext(channels=4, factor=4, blocks=1, res_scale=0.1)
        >>> x = torch.randn(1, 4, 10, 9, 8)
        >>> torch.equal(context(x), x)  # the identity until trained
        True
    """

    def __init__(self, *, channels: int, factor: int, blocks: int, res_scale: float) -> None:
        super().__init__()
        if factor < 2 or blocks < 1:
            raise ValueError(f"context needs factor >= 2 and blocks >= 1, got {factor}, {blocks}")
        self.factor = factor
        self.body = nn.Sequential(*(_ResidualBlock(channels, res_scale) for _ in range(blocks)))
        self.out = nn.Conv3d(channels, channels, kernel_size=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        coarse = F.avg_pool3d(x, self.factor, ceil_mode=True)  # edge cells: mean of what is there
        coarse = self.body(coarse)
        return x + self.out(F.interpolate(coarse, size=x.shape[2:], mode="trilinear"))


class ResidualEncoder3D(nn.Module):
    """EDSR-style 3D encoder: ``(B, in_channels, D, H, W) -> (B, out_channels, D, H, W)``.

    Args:
        in_channels: image channels (1 for a single MR contrast).
        features: width of the residual blocks (official: 256).
        blocks: number of residual blocks (official: 24).
        out_channels: feature dimension handed to the fusion block (official: 768).
        res_scale: residual scaling (official: 0.1).
        context: ``{"factor": f, "blocks": n}`` for a :class:`PooledContext` after the residual
            blocks (official: none).

    Example:
        >>> encoder = ResidualEncoder3D(features=8, blocks=2, out_channels=16)
        >>> encoder(torch.zeros(1, 1, 4, 4, 4)).shape
        torch.Size([1, 16, 4, 4, 4])
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        features: int = 256,
        blocks: int = 24,
        out_channels: int = 768,
        res_scale: float = 0.1,
        context: dict | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("features", features)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if blocks < 0 or out_channels < 1:
            raise ValueError(
                f"blocks >= 0 and out_channels >= 1 needed, got {blocks}, {out_channels}"
            )
        self.head = nn.Sequential(Conv3d3(in_channels, features))
        self.body = nn.Sequential(
            *(_ResidualBlock(features, res_scale) for _ in range(blocks)),
            Conv3d3(features, features),
        )
        self.context = (
            nn.Identity()
            if context is None
            else PooledContext(channels=features, res_scale=res_scale, **context)
        )
        self.tail = nn.Sequential(Conv3d3(features, out_channels))
        self.out_channels = out_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 5:
            raise ValueError(f"expected a (B, C, D, H, W) image, got shape {tuple(image.shape)}")
        with reused_buffers():  # every layer has the same shapes: one set of scratch tensors
            x = self.head(image)
            return self.tail(self.context(self.body(x) + x))
