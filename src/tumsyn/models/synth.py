"""The stage-2 synthesis network: encode the source image, condition on the prompt, decode anywhere.

``gen_feat`` encodes an image patch once; ``condition`` fuses it with the target prompt's text
features; ``query`` answers any coordinates (any resolution, in memory-bounded chunks). This split
(LIIF's) is what whole-volume inference needs. Parameter names follow the official ``lccd`` model
(``encoder.*``, ``fusion.*``, ``imnet.*``) so the published weights load unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.models.fusion import GlobalTextFusion, VoxelCrossAttentionFusion
from tumsyn.models.liif import LocalImplicitDecoder, OfficialDecoder
from tumsyn.models.registry import register
from tumsyn.models.residual_encoder import ResidualEncoder3D

__all__ = ["SynthConfig", "SynthesisNetwork"]


class EncoderConfig(StrictConfig):
    in_channels: int = 1
    features: int = 256
    blocks: int = 24
    out_channels: int = 768
    res_scale: float = 0.1


class FusionConfig(StrictConfig):
    kind: Literal["global", "voxel"] = "voxel"  # official single-vector block, or per-voxel
    heads: int = 8
    mlp_ratio: float = 4.0
    depth: int = 1


class DecoderConfig(StrictConfig):
    kind: Literal["official", "liif"] = "liif"
    hidden: tuple[int, ...] = (3072, 3072, 768, 256)
    unfold: bool = False  # LIIF feature unfolding (27x wider input)
    chunk_size: int | None = 32768  # query points decoded at a time; None = all at once


class SynthConfig(StrictConfig):
    """Stage-2 configuration (the ``synth`` family)."""

    encoder: EncoderConfig = EncoderConfig()
    fusion: FusionConfig = FusionConfig()
    decoder: DecoderConfig = DecoderConfig()
    text_dim: int = 768  # the stage-1 text embedding size
    official_quirks: bool = False  # reproduce the official fusion arithmetic exactly

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        if self.fusion.kind == "global" and self.text_dim != self.encoder.out_channels:
            raise ValueError(
                f"the global (official) fusion needs text_dim == encoder.out_channels, "
                f"got {self.text_dim} and {self.encoder.out_channels}"
            )
        if self.official_quirks and self.fusion.kind != "global":
            raise ValueError("official_quirks only applies to the global (official) fusion")
        return self


class SynthesisNetwork(nn.Module):
    """Source image + target text features -> target intensities at query coordinates.

    Args:
        encoder: image encoder ``(B, 1, D, H, W) -> (B, C, D, H, W)``.
        fusion: text conditioning ``(B, C, D, H, W), text -> (B, C, D, H, W)``.
        imnet: implicit decoder ``feat, coord (B, Q, 3), cell -> (B, Q, 1)``.
        chunk_size: query points decoded at a time (None: all).
    """

    def __init__(
        self, encoder: nn.Module, fusion: nn.Module, imnet: nn.Module, chunk_size: int | None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.fusion = fusion
        self.imnet = imnet
        self.chunk_size = chunk_size

    def gen_feat(self, image: torch.Tensor) -> torch.Tensor:
        """Features of a source patch ``(B, 1, D, H, W) -> (B, C, D, H, W)``."""
        return self.encoder(image)

    def condition(
        self, feat: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Fuse features with the target prompt (``(B, E)`` vector or ``(B, L, E)`` tokens)."""
        return self.fusion(feat, text, text_mask)

    def query(
        self, feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Intensities ``(B, Q, 1)`` at coordinates ``(B, Q, 3)`` in [-1, 1] (z, y, x)."""
        return self.imnet(feat, coord, cell, chunk_size=self.chunk_size)

    def forward(
        self,
        image: torch.Tensor,
        coord: torch.Tensor,
        text: torch.Tensor,
        *,
        cell: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.query(self.condition(self.gen_feat(image), text, text_mask), coord, cell)


@register("synth", SynthConfig)
def build_synth(config: SynthConfig) -> SynthesisNetwork:
    e, f, d = config.encoder, config.fusion, config.decoder
    encoder = ResidualEncoder3D(
        in_channels=e.in_channels,
        features=e.features,
        blocks=e.blocks,
        out_channels=e.out_channels,
        res_scale=e.res_scale,
    )
    if f.kind == "global":
        fusion: nn.Module = GlobalTextFusion(
            dim=e.out_channels,
            heads=f.heads,
            mlp_ratio=f.mlp_ratio,
            depth=f.depth,
            official_quirks=config.official_quirks,
        )
    else:
        fusion = VoxelCrossAttentionFusion(
            dim=e.out_channels,
            text_dim=config.text_dim,
            heads=f.heads,
            mlp_ratio=f.mlp_ratio,
            depth=f.depth,
        )
    if d.kind == "official":
        imnet: nn.Module = OfficialDecoder(in_channels=e.out_channels, hidden=d.hidden)
    else:
        imnet = LocalImplicitDecoder(in_channels=e.out_channels, hidden=d.hidden, unfold=d.unfold)
    return SynthesisNetwork(encoder, fusion, imnet, d.chunk_size)
