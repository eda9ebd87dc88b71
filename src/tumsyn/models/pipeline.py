"""A deployable synthesis model: the frozen conditioner and the stage-2 network, one file.

``tumsyn synthesize`` needs both halves: the conditioner (the stage-1 text tower, or a baseline's
from :mod:`tumsyn.models.conditioners`) turns a prompt into features, the network turns a source
patch and those features into the target. :class:`SynthesisPipeline` holds them (keys ``text.*``
and ``synth.*``) with a spec that rebuilds both, and records what the training data covered, so
that prompts outside it can be flagged as extrapolations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import PositiveInt, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.models.bmlip import TextConfig
from tumsyn.models.registry import build, load_config, parse_config, register
from tumsyn.models.routed import RoutedNetwork
from tumsyn.models.synth import SynthesisNetwork
from tumsyn.models.text_encoder import TextEncoder, check_text_encoder_args

__all__ = [
    "CONDITIONER_FAMILIES",
    "PipelineConfig",
    "SynthesisPipeline",
    "TextTowerConfig",
    "make_pipeline",
    "text_tower_spec",
]


class TextTowerConfig(TextConfig):
    """A standalone text tower (``text`` family): the stage-1 text encoder on its own."""

    embed_dim: PositiveInt = 768

    def feature_dim(self) -> int:
        return self.embed_dim

    @model_validator(mode="after")
    def _fits(self) -> TextTowerConfig:
        check_text_encoder_args(**self.model_dump())
        return self


@register("text", TextTowerConfig)
def build_text(config: TextTowerConfig) -> TextEncoder:
    return TextEncoder(**config.model_dump())


#: Registered families that may fill a pipeline's ``text`` slot (:mod:`tumsyn.models.conditioners`).
CONDITIONER_FAMILIES = ("text", "onehot", "metadata", "sentence")


#: Registered families that may fill a pipeline's ``synth`` slot: one network, or one per input
#: modality (:mod:`tumsyn.models.routed`).
NETWORK_FAMILIES = ("synth", "routed")


class PipelineConfig(StrictConfig):
    text: dict[str, Any]  # the conditioner's spec ("text" for the stage-1 tower, by history)
    synth: dict[str, Any]  # a "synth" spec, or a "routed" one (a network per input modality)

    @model_validator(mode="after")
    def _specs(self) -> PipelineConfig:
        text, synth = load_config(self.text), load_config(self.synth)
        if text["name"] not in CONDITIONER_FAMILIES or synth["name"] not in NETWORK_FAMILIES:
            raise ValueError(
                f"a pipeline holds a conditioner spec ({', '.join(CONDITIONER_FAMILIES)}) and a "
                f"network spec ({', '.join(NETWORK_FAMILIES)}), got {text['name']!r} and "
                f"{synth['name']!r}"
            )
        features, text_dim = parse_config(text).feature_dim(), parse_config(synth).text_dim
        if features != text_dim:
            raise ValueError(
                f"the {text['name']} conditioner gives {features}-d features, synth text_dim is "
                f"{text_dim}"
            )
        return self


class SynthesisPipeline(nn.Module):
    """Conditioner + synthesis network.

    Args:
        text: the frozen conditioner (the stage-1 text encoder, or a baseline's): anything with
            ``features(prompts, pooled=...)``.
        synth: the stage-2 network, or a :class:`~tumsyn.models.routed.RoutedNetwork`.
    """

    def __init__(self, text: nn.Module, synth: SynthesisNetwork | RoutedNetwork) -> None:
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
        """Features of one prompt, in the form the fusion block takes (batch of 1)."""
        device = next(self.synth.parameters()).device
        text, mask = self.text.features([prompt], pooled=self.pooled_text)
        return text.to(device), None if mask is None else mask.to(device)

    def predictor(
        self,
        prompt: str,
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_modality: str | None = None,
        target_modality: str | None = None,
    ) -> Callable[..., torch.Tensor]:
        """``(patches, coord, cell) -> values`` with the prompt bound (for whole volumes).

        ``encode`` replaces the network's patch encoder (``gen_feat``), e.g. by one that
        remembers the features of patches it has seen: they do not depend on the prompt.
        ``input_modality`` picks the network of a routed model (None: its fallback), and
        ``target_modality`` (the prompt's) its specialist for that target, if it has one.
        """
        text, mask = self.encode_prompt(prompt)
        network = self.synth.for_input(input_modality, target_modality)
        encode = encode or network.gen_feat

        def predict(patches: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
            batch = patches.shape[0]
            expanded = text.expand(batch, *text.shape[1:])
            expanded_mask = None if mask is None else mask.expand(batch, -1)
            conditioned = network.condition(encode(patches), expanded, expanded_mask)
            return network.query(conditioned, coord, cell)

        return predict


@register("pipeline", PipelineConfig)
def build_pipeline(config: PipelineConfig) -> SynthesisPipeline:
    return SynthesisPipeline(build(config.text), build(config.synth))


def text_tower_spec(encoder: TextEncoder) -> dict[str, Any]:
    """The ``text`` spec of a stage-1 text tower (which BMLIP assembles without one)."""
    return load_config(
        {
            "name": "text",
            "args": {
                "context_length": encoder.context_length,
                "vocab_size": encoder.vocab_size,
                "width": encoder.width,
                "layers": len(encoder.transformer.resblocks),
                "heads": encoder.transformer.resblocks[0].attn.num_heads,
                "embed_dim": encoder.embed_dim,
            },
        }
    )


def make_pipeline(
    conditioner: nn.Module, synth: SynthesisNetwork | RoutedNetwork
) -> SynthesisPipeline:
    """A pipeline (with its spec) from a conditioner (a stage-1 text tower or a built
    conditioner with its ``spec``) and a stage-2 network."""
    spec = getattr(conditioner, "spec", None) or text_tower_spec(conditioner)
    pipeline = SynthesisPipeline(conditioner, synth)
    pipeline.spec = load_config({"name": "pipeline", "args": {"text": spec, "synth": synth.spec}})
    return pipeline
