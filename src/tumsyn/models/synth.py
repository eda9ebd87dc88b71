"""The stage-2 synthesis network: encode the source image, condition on the prompt, decode anywhere.

``gen_feat`` encodes an image patch once; ``condition`` fuses it with the target prompt's text
features; ``query`` answers any coordinates (any resolution, in memory-bounded chunks). This split
(LIIF's) is what whole-volume inference needs. Parameter names follow the official ``lccd`` model
(``encoder.*``, ``fusion.*``, ``imnet.*``) so the published weights load unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from pydantic import field_validator, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.models.fusion import (
    GlobalTextFusion,
    ModulatedVoxelFusion,
    VoxelCrossAttentionFusion,
)
from tumsyn.models.liif import LocalImplicitDecoder, OfficialDecoder
from tumsyn.models.registry import register
from tumsyn.models.residual_encoder import ResidualEncoder3D

__all__ = [
    "SynthConfig",
    "SynthesisNetwork",
    "extends_spec",
    "fusion_takes_pooled_text",
    "register_decoder",
    "register_fusion",
]


class ContextConfig(StrictConfig):
    factor: int = 4  # the coarse scale: features average-pooled by this much
    blocks: int = 2  # residual blocks at that scale


class EncoderConfig(StrictConfig):
    in_channels: int = 1
    features: int = 256
    blocks: int = 24
    out_channels: int = 768
    res_scale: float = 0.1
    context: ContextConfig | None = None  # a PooledContext branch (starts as the identity)


@dataclass(frozen=True)
class _Kind:
    """A registered fusion or decoder kind: its builder and what the rest of tumsyn must know."""

    build: Callable[[SynthConfig], nn.Module]
    check: Callable[[SynthConfig], None]
    pooled_text: bool = False  # a fusion that takes the pooled prompt vector, not its tokens
    extends: str | None = None  # a fusion that is this kind plus parameters starting as identity


_FUSIONS: dict[str, _Kind] = {}
_DECODERS: dict[str, _Kind] = {}


def _registrar(table: dict[str, _Kind], kind: str, **facts) -> Callable:
    def decorator(build: Callable[[SynthConfig], nn.Module]) -> Callable:
        table[kind] = _Kind(build=build, check=facts.pop("check", _no_check), **facts)
        return build

    return decorator


def _no_check(config: SynthConfig) -> None:
    """Every combination of settings is valid for this kind."""


def register_fusion(
    kind: str, *, pooled_text: bool, check=_no_check, extends: str | None = None
) -> Callable:
    """Register a fusion builder ``(SynthConfig) -> module`` under ``kind`` (LIIF's registry:
    a new way of conditioning is one registered builder, not an ``if`` on a string).
    ``extends``: the kind whose parameters this one holds too, its own starting as the identity
    (a checkpoint of that kind can initialise this one: :func:`extends_spec`)."""
    return _registrar(_FUSIONS, kind, pooled_text=pooled_text, check=check, extends=extends)


def register_decoder(kind: str, *, check=_no_check) -> Callable:
    """Register a decoder builder ``(SynthConfig) -> module`` under ``kind``."""
    return _registrar(_DECODERS, kind, check=check)


def fusion_takes_pooled_text(kind: str) -> bool:
    """Whether fusion ``kind`` is given the pooled prompt vector ``(B, E)`` (the official
    block) rather than the prompt's tokens ``(B, L, E)`` and their mask."""
    return _FUSIONS[kind].pooled_text


def extends_spec(spec: dict, base: dict) -> bool:
    """Whether network ``spec`` is ``base`` plus parameters that start as the identity (a fusion
    that extends base's, a context branch in the encoder, or both), so that ``base``'s weights
    initialise every parameter but the extensions'."""
    reduced = [spec]
    for reduce in (_without_fusion_extension, _without_context):
        reduced += [smaller for candidate in reduced if (smaller := reduce(candidate)) is not None]
    return base in reduced[1:]


def _without_fusion_extension(spec: dict) -> dict | None:
    """``spec`` with its fusion replaced by the kind it extends (None: it extends none)."""
    fusion = spec["args"]["fusion"]
    extended = _FUSIONS[_known(_FUSIONS, "fusion", fusion["kind"])].extends
    if extended is None:
        return None
    return {**spec, "args": {**spec["args"], "fusion": {**fusion, "kind": extended}}}


def _without_context(spec: dict) -> dict | None:
    """``spec`` without its encoder's context branch (None: it has none)."""
    encoder = spec["args"]["encoder"]
    if encoder["context"] is None:
        return None
    return {**spec, "args": {**spec["args"], "encoder": {**encoder, "context": None}}}


def _known(table: dict[str, _Kind], what: str, kind: str) -> str:
    if kind not in table:
        raise ValueError(f"unknown {what} kind {kind!r}; known: {', '.join(sorted(table))}")
    return kind


class FusionConfig(StrictConfig):
    kind: str = "voxel"  # registered: "global" (official single vector), "voxel", "voxel_film"
    heads: int = 8
    mlp_ratio: float = 4.0
    depth: int = 1

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        return _known(_FUSIONS, "fusion", kind)


class DecoderConfig(StrictConfig):
    kind: str = "liif"  # a registered decoder: "official" (absolute coordinates), "liif"
    hidden: tuple[int, ...] = (3072, 3072, 768, 256)
    unfold: bool = False  # LIIF feature unfolding (27x wider input)
    chunk_size: int | None = 32768  # query points decoded at a time; None = all at once

    @field_validator("kind")
    @classmethod
    def _registered(cls, kind: str) -> str:
        return _known(_DECODERS, "decoder", kind)


class SynthConfig(StrictConfig):
    """Stage-2 configuration (the ``synth`` family)."""

    encoder: EncoderConfig = EncoderConfig()
    fusion: FusionConfig = FusionConfig()
    decoder: DecoderConfig = DecoderConfig()
    text_dim: int = 768  # the stage-1 text embedding size
    official_quirks: bool = False  # reproduce the official fusion arithmetic exactly

    @model_validator(mode="after")
    def _consistent(self) -> SynthConfig:
        _FUSIONS[self.fusion.kind].check(self)
        _DECODERS[self.decoder.kind].check(self)
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

    @property
    def pooled_text(self) -> bool:
        """Whether :meth:`condition` takes the pooled prompt vector rather than tokens."""
        return fusion_takes_pooled_text(self.spec["args"]["fusion"]["kind"])

    def for_input(
        self, input_modality: str | None, target_modality: str | None = None
    ) -> SynthesisNetwork:
        """The network that reads an input of ``input_modality`` into ``target_modality``: this
        one does every pair (a routed model picks one per modality, :mod:`tumsyn.models.routed`)."""
        return self

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


def _check_global(config: SynthConfig) -> None:
    if config.text_dim != config.encoder.out_channels:
        raise ValueError(
            f"the global (official) fusion needs text_dim == encoder.out_channels, "
            f"got {config.text_dim} and {config.encoder.out_channels}"
        )


def _check_no_quirks(config: SynthConfig) -> None:
    if config.official_quirks:
        raise ValueError("official_quirks only applies to the global (official) fusion")


@register_fusion("global", pooled_text=True, check=_check_global)
def _global_fusion(config: SynthConfig) -> nn.Module:
    f = config.fusion
    return GlobalTextFusion(
        dim=config.encoder.out_channels,
        heads=f.heads,
        mlp_ratio=f.mlp_ratio,
        depth=f.depth,
        official_quirks=config.official_quirks,
    )


def _voxel_fusion(fusion: type[VoxelCrossAttentionFusion]) -> Callable[[SynthConfig], nn.Module]:
    """The builder of a per-voxel cross-attention fusion class (plain or modulated)."""

    def build_fusion(config: SynthConfig) -> nn.Module:
        f = config.fusion
        return fusion(
            dim=config.encoder.out_channels,
            text_dim=config.text_dim,
            heads=f.heads,
            mlp_ratio=f.mlp_ratio,
            depth=f.depth,
        )

    return build_fusion


register_fusion("voxel", pooled_text=False, check=_check_no_quirks)(
    _voxel_fusion(VoxelCrossAttentionFusion)
)
register_fusion("voxel_film", pooled_text=False, check=_check_no_quirks, extends="voxel")(
    _voxel_fusion(ModulatedVoxelFusion)
)


@register_decoder("official")
def _official_decoder(config: SynthConfig) -> nn.Module:
    return OfficialDecoder(in_channels=config.encoder.out_channels, hidden=config.decoder.hidden)


@register_decoder("liif")
def _liif_decoder(config: SynthConfig) -> nn.Module:
    d = config.decoder
    return LocalImplicitDecoder(
        in_channels=config.encoder.out_channels, hidden=d.hidden, unfold=d.unfold
    )


@register("synth", SynthConfig)
def build_synth(config: SynthConfig) -> SynthesisNetwork:
    e = config.encoder
    encoder = ResidualEncoder3D(
        in_channels=e.in_channels,
        features=e.features,
        blocks=e.blocks,
        out_channels=e.out_channels,
        res_scale=e.res_scale,
        context=None if e.context is None else e.context.model_dump(),
    )
    fusion = _FUSIONS[config.fusion.kind].build(config)
    imnet = _DECODERS[config.decoder.kind].build(config)
    return SynthesisNetwork(encoder, fusion, imnet, config.decoder.chunk_size)
