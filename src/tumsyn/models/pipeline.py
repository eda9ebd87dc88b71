"""A deployable synthesis model: the frozen stage-1 text tower and the stage-2 network, one file.

``tumsyn synthesize`` needs both halves: the text tower turns a prompt into features, the network
turns a source patch and those features into the target. :class:`SynthesisPipeline` holds them
(keys ``text.*`` and ``synth.*``) with a spec that rebuilds both, and records what the training
data covered, so that prompts outside it can be flagged as extrapolations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import PositiveInt, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.models.bmlip import TextConfig
from tumsyn.models.registry import build, load_config, register
from tumsyn.models.synth import SynthesisNetwork
from tumsyn.models.text_encoder import TextEncoder, check_text_encoder_args
from tumsyn.text import tokenize

__all__ = ["PipelineConfig", "SynthesisPipeline", "TextTowerConfig", "make_pipeline"]


class TextTowerConfig(TextConfig):
    """A standalone text tower (``text`` family): the stage-1 text encoder on its own."""

    embed_dim: PositiveInt = 768

    @model_validator(mode="after")
    def _fits(self) -> TextTowerConfig:
        check_text_encoder_args(**self.model_dump())
        return self


@register("text", TextTowerConfig)
def build_text(config: TextTowerConfig) -> TextEncoder:
    return TextEncoder(**config.model_dump())


class PipelineConfig(StrictConfig):
    text: dict[str, Any]  # a "text" spec
    synth: dict[str, Any]  # a "synth" spec

    @model_validator(mode="after")
    def _specs(self) -> PipelineConfig:
        text, synth = load_config(self.text), load_config(self.synth)
        if text["name"] != "text" or synth["name"] != "synth":
            raise ValueError("a pipeline holds a 'text' spec and a 'synth' spec")
        if text["args"]["embed_dim"] != synth["args"]["text_dim"]:
            raise ValueError(
                f"text embed_dim {text['args']['embed_dim']} != synth text_dim "
                f"{synth['args']['text_dim']}"
            )
        return self


class SynthesisPipeline(nn.Module):
    """Text tower + synthesis network.

    Args:
        text: the stage-1 text encoder (frozen).
        synth: the stage-2 network.
    """

    def __init__(self, text: TextEncoder, synth: SynthesisNetwork) -> None:
        super().__init__()
        self.text = text
        self.synth = synth
        self.text.requires_grad_(False)

    @property
    def pooled_text(self) -> bool:
        """Whether the fusion takes the pooled vector (official) or prompt tokens (tumsyn)."""
        return self.synth.pooled_text

    @torch.no_grad()
    def encode_prompt(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Text features of one prompt, in the form the fusion block takes (batch of 1)."""
        device = self.text.text_projection.device
        ids = tokenize(prompt).to(device)
        if self.pooled_text:
            return self.text(ids), None
        return self.text.prompt_tokens(ids)

    def predictor(self, prompt: str) -> Callable[..., torch.Tensor]:
        """``(patches, coord, cell) -> values`` with the prompt bound (for whole volumes)."""
        text, mask = self.encode_prompt(prompt)

        def predict(patches: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            batch = patches.shape[0]
            expanded = text.expand(batch, *text.shape[1:])
            expanded_mask = None if mask is None else mask.expand(batch, -1)
            return self.synth(patches, coord, expanded, cell=cell, text_mask=expanded_mask)

        return predict


@register("pipeline", PipelineConfig)
def build_pipeline(config: PipelineConfig) -> SynthesisPipeline:
    return SynthesisPipeline(build(config.text), build(config.synth))


def make_pipeline(text_encoder: TextEncoder, synth: SynthesisNetwork) -> SynthesisPipeline:
    """A pipeline (with its spec) from a stage-1 text tower and a stage-2 network."""
    text_spec = {
        "name": "text",
        "args": {
            "context_length": text_encoder.context_length,
            "vocab_size": text_encoder.vocab_size,
            "width": text_encoder.width,
            "layers": len(text_encoder.transformer.resblocks),
            "heads": text_encoder.transformer.resblocks[0].attn.num_heads,
            "embed_dim": text_encoder.embed_dim,
        },
    }
    pipeline = SynthesisPipeline(text_encoder, synth)
    pipeline.spec = load_config(
        {"name": "pipeline", "args": {"text": text_spec, "synth": synth.spec}}
    )
    return pipeline
