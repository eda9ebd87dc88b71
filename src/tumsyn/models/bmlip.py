"""BMLIP, TUMSyn's stage 1: CLIP-style contrastive pre-training of metadata text against 3D MRI.

A text encoder (:class:`~tumsyn.models.text_encoder.TextEncoder`) and an image encoder
(:class:`~tumsyn.models.image_encoders.ViT3D` as in the paper, or
:class:`~tumsyn.models.image_encoders.ModifiedResNet3D` as in the released code) map a prompt and a
volume into one ``embed_dim`` space; :func:`contrastive_loss` (symmetric InfoNCE over cosine
similarities times a learned scale) pulls matching pairs together. Stage 2 keeps the text encoder,
frozen, and conditions synthesis on its raw (unnormalised) output.

With ``configs/official-bmlip.yaml`` the ``state_dict`` keys and shapes are exactly those of the
official checkpoint (``model_state_dict``), so it loads with ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.models.image_encoders import (
    ModifiedResNet3D,
    ViT3D,
    check_resnet_args,
    check_vit_args,
)
from tumsyn.models.registry import register
from tumsyn.models.text_encoder import TextEncoder, check_text_encoder_args

__all__ = [
    "BMLIP",
    "MAX_LOGIT_SCALE",
    "BMLIPConfig",
    "ResNetVisionConfig",
    "TextConfig",
    "ViTVisionConfig",
    "build_bmlip",
    "contrastive_logits",
    "contrastive_loss",
]

#: Initial ``logit_scale`` (the log of the similarity multiplier): a temperature of 0.07, as CLIP.
INITIAL_LOGIT_SCALE = math.log(1 / 0.07)
#: The largest ``logit_scale`` used: ln(100), as CLIP and the official training code.
MAX_LOGIT_SCALE = math.log(100.0)


def contrastive_logits(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Scaled cosine similarities, one row per image.

    Args:
        image_features: (N_image, E) features (any norm).
        text_features: (N_text, E) features (any norm).
        logit_scale: log of the multiplier (``BMLIP.logit_scale``); clamped to [0, ln 100] before
            ``exp``, as the official training does after every step.

    Returns:
        (N_image, N_text) ``exp(logit_scale) * cos(image_i, text_j)``.
    """
    if image_features.dim() != 2 or text_features.dim() != 2:
        raise ValueError(
            "features must be 2D (N, E), got image "
            f"{tuple(image_features.shape)} and text {tuple(text_features.shape)}"
        )
    if image_features.shape[1] != text_features.shape[1]:
        raise ValueError(
            f"image features have {image_features.shape[1]} dimensions, "
            f"text features {text_features.shape[1]}"
        )
    scale = torch.as_tensor(logit_scale, device=image_features.device)
    scale = scale.clamp(0.0, MAX_LOGIT_SCALE).exp()
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    return scale * image_features @ text_features.t()


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """Symmetric InfoNCE: the mean of image->text and text->image cross-entropy (pair i matches i).

    Args:
        image_features: (N, E) features of N images (any norm; cosine similarities are used).
        text_features: (N, E) features of their N prompts.
        logit_scale: log of the similarity multiplier (see :func:`contrastive_logits`).

    Returns:
        Scalar loss; ``log(N)`` when all features are identical.
    """
    if image_features.shape[0] != text_features.shape[0]:
        raise ValueError(
            f"need as many texts as images, got {image_features.shape[0]} images and "
            f"{text_features.shape[0]} texts"
        )
    logits = contrastive_logits(image_features, text_features, logit_scale)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2


class BMLIP(nn.Module):
    """Brain MRI language-image pre-training model: an image tower and a text tower, one space.

    Parameter layout. The official checkpoint keeps the text tower's parts at the top level
    (``token_embedding.weight``, ``positional_embedding``, ``transformer.*``, ``ln_final.*``,
    ``text_projection``) beside ``visual.*`` and ``logit_scale``. So the parts of the given
    :class:`TextEncoder` are registered here under those names, and no TextEncoder is stored at
    all: :meth:`text_encoder` assembles one on each call from the parts registered *now*. This keeps
    a single owner of every parameter (no duplicate keys, no ``text.`` prefix, no state-dict hooks)
    and, unlike a cached TextEncoder object, cannot go stale when ``load_state_dict(assign=True)``
    or a dtype/device conversion replaces parameter objects.

    Args:
        visual: image tower, ``(N, 1, D, H, W) -> (N, embed_dim)``, with an ``embed_dim`` attribute.
        text: text tower; its parts become this module's (shared, not copied).

    Example:
        >>> from tumsyn.models.registry import build
        >>> from tumsyn.text import tokenize
        >>> model = build("bmlip-tiny")
        >>> images = torch.rand(2, 1, 32, 32, 32)
        >>> ids = tokenize(["Age: 30; Gender: F", "Age: 70; Gender: M"])
        >>> image_features, text_features = model(images, ids)  # (2, 128) each
        >>> loss = contrastive_loss(image_features, text_features, model.logit_scale)
    """

    def __init__(self, visual: nn.Module, text: TextEncoder) -> None:
        super().__init__()
        if not isinstance(text, TextEncoder):
            raise ValueError(f"text must be a TextEncoder, got {type(text).__name__}")
        visual_dim = getattr(visual, "embed_dim", None)
        if visual_dim != text.embed_dim:
            raise ValueError(
                f"image tower gives {visual_dim}-dimensional features, text tower {text.embed_dim}"
            )
        self.embed_dim = text.embed_dim
        self.context_length = text.context_length
        # Registration order reproduces the official state_dict order.
        self.positional_embedding = text.positional_embedding
        self.text_projection = text.text_projection
        self.logit_scale = nn.Parameter(torch.tensor(INITIAL_LOGIT_SCALE))
        self.visual = visual
        self.transformer = text.transformer
        self.token_embedding = text.token_embedding
        self.ln_final = text.ln_final

    def text_encoder(self) -> TextEncoder:
        """The text tower as a standalone module sharing this model's parameters (for stage 2).

        Its ``state_dict`` holds exactly this model's text keys.
        """
        encoder = TextEncoder._from_parts(
            token_embedding=self.token_embedding,
            positional_embedding=self.positional_embedding,
            transformer=self.transformer,
            ln_final=self.ln_final,
            text_projection=self.text_projection,
        )
        return encoder.train(self.training)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 1, D, H, W) volumes -> (N, embed_dim) unnormalised image features."""
        return self.visual(image)

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(N, context_length) token ids -> (N, embed_dim) unnormalised text features."""
        return self.text_encoder()(ids)

    def forward(self, image: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of N volumes and N prompts.

        Unnormalised, as the official model returns them: stage 2 uses the raw text vector, and
        :func:`contrastive_loss` normalises. Pass ``self.logit_scale`` to the loss.

        Args:
            image: (N, 1, D, H, W) volumes.
            ids: (N, context_length) token ids.

        Returns:
            ``(image_features, text_features)``, each (N, embed_dim).
        """
        return self.encode_image(image), self.encode_text(ids)

    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp ``logit_scale`` to [0, ln 100] in place, as the official loop does after each step.

        The loss already clamps what it uses; calling this after ``optimizer.step()`` also keeps
        the stored value (and hence its gradient) inside the range.
        """
        self.logit_scale.clamp_(0.0, MAX_LOGIT_SCALE)


# ----- configuration -------------------------------------------------------------------------


class TextConfig(StrictConfig):
    """The text tower (defaults: the official and paper sizes)."""

    context_length: PositiveInt = 90
    vocab_size: PositiveInt = 49408
    width: PositiveInt = 512
    layers: PositiveInt = 8
    heads: PositiveInt = 8


class ResNetVisionConfig(StrictConfig):
    """The released code's image tower, :class:`ModifiedResNet3D` (defaults: the official sizes)."""

    kind: Literal["resnet"] = "resnet"
    input_size: PositiveInt = 120
    layers: tuple[PositiveInt, PositiveInt, PositiveInt, PositiveInt] = (3, 4, 6, 3)
    width: PositiveInt = 256
    heads: PositiveInt | None = Field(
        default=None, description="attention-pool heads; default 32 * width // 64"
    )


class ViTVisionConfig(StrictConfig):
    """The paper's image tower, :class:`ViT3D` (defaults: ViT-B/16 on 96^3)."""

    kind: Literal["vit"] = "vit"
    input_size: PositiveInt = 96
    patch_size: PositiveInt = 16
    width: PositiveInt = 768
    layers: PositiveInt = 12
    heads: PositiveInt = 12
    mlp_dim: PositiveInt = 3072
    dropout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    qkv_bias: bool = True


class BMLIPConfig(StrictConfig):
    """``bmlip`` family: ``embed_dim``, a ``text`` section and a ``vision`` section (``kind``)."""

    embed_dim: PositiveInt = 768
    text: TextConfig = TextConfig()
    vision: Annotated[ResNetVisionConfig | ViTVisionConfig, Field(discriminator="kind")] = (
        ViTVisionConfig()
    )

    @model_validator(mode="after")
    def _sizes_fit(self) -> BMLIPConfig:
        # The towers' own checks, so that a config that loads also builds.
        try:
            check_text_encoder_args(**self.text.model_dump(), embed_dim=self.embed_dim)
        except ValueError as error:
            raise ValueError(f"text: {error}") from None
        vision = self.vision.model_dump(exclude={"kind"})
        try:
            if isinstance(self.vision, ResNetVisionConfig):
                if vision["heads"] is None:
                    vision["heads"] = 32 * self.vision.width // 64
                check_resnet_args(**vision, embed_dim=self.embed_dim)
            else:
                vision.pop("qkv_bias")
                check_vit_args(**vision, embed_dim=self.embed_dim)
        except ValueError as error:
            raise ValueError(f"vision: {error}") from None
        return self


@register("bmlip", BMLIPConfig)
def build_bmlip(config: BMLIPConfig) -> BMLIP:
    """Build a :class:`BMLIP` from its validated configuration."""
    text = TextEncoder(**config.text.model_dump(), embed_dim=config.embed_dim)
    vision = config.vision
    visual: nn.Module
    if isinstance(vision, ResNetVisionConfig):
        visual = ModifiedResNet3D(
            vision.layers,
            embed_dim=config.embed_dim,
            input_size=vision.input_size,
            width=vision.width,
            heads=vision.heads,
        )
    else:
        visual = ViT3D(**vision.model_dump(exclude={"kind"}), embed_dim=config.embed_dim)
    return BMLIP(visual, text)
