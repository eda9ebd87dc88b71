"""One synthesis network per input modality: the input's modality picks the network (model v2).

A ``tumsyn-tiny`` network fine-tuned on randomised inputs of one sequence family learns that
family's mapping; trained on every family at once it loses grey/white contrast, and telling it
the input's contrast through a thumbnail of the whole input did not help (docs/decisions.md). A
routed model therefore holds one ordinary ``synth`` network per input modality and names the one
that reads inputs of any other or of an unknown modality (``fallback``). Its checkpoint keys are
the networks' own under ``networks.<modality>.``, so a routed model is assembled from ordinary
stage-2 runs (``scripts/package_release.py``).
"""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.errors import MetadataError
from tumsyn.metadata import canonical_modality
from tumsyn.models.registry import build, load_config, parse_config, register
from tumsyn.models.synth import SynthesisNetwork, fusion_takes_pooled_text

__all__ = ["RoutedConfig", "RoutedNetwork", "make_routed"]


class RoutedConfig(StrictConfig):
    """``networks``: input modality -> a ``synth`` spec; ``fallback``: one of those modalities."""

    networks: dict[str, dict[str, Any]]
    fallback: str

    @field_validator("networks")
    @classmethod
    def _synth_specs(cls, networks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not networks:
            raise ValueError("a routed model needs at least one network")
        specs = {}
        for modality, spec in networks.items():
            key = _canonical(modality)
            if key in specs:
                raise ValueError(f"two networks for {key} inputs")
            specs[key] = load_config(spec)
            if specs[key]["name"] != "synth":
                raise ValueError(f"the {key} network must be a 'synth' spec")
        if len({spec["args"]["text_dim"] for spec in specs.values()}) > 1:
            raise ValueError("every network must take prompt features of one size (text_dim)")
        if len({_pooled(spec) for spec in specs.values()}) > 1:
            raise ValueError("every network must take the prompt in one form (fusion kind)")
        return specs

    @field_validator("fallback")
    @classmethod
    def _modality(cls, fallback: str) -> str:
        return _canonical(fallback)

    @model_validator(mode="after")
    def _fallback_is_a_network(self) -> RoutedConfig:
        if self.fallback not in self.networks:
            raise ValueError(
                f"fallback {self.fallback!r} is not one of the networks "
                f"({', '.join(self.networks)})"
            )
        return self

    @property
    def text_dim(self) -> int:
        return parse_config(self.networks[self.fallback]).text_dim


def _canonical(modality: str) -> str:
    try:
        return canonical_modality(modality)
    except MetadataError as error:
        raise ValueError(str(error)) from None


def _pooled(spec: dict[str, Any]) -> bool:
    return fusion_takes_pooled_text(spec["args"]["fusion"]["kind"])


class RoutedNetwork(nn.Module):
    """Synthesis networks keyed by the input modality they read.

    Args:
        networks: input modality (canonical spelling) -> network.
        fallback: the key of the network for inputs of any other or an unknown modality.
    """

    def __init__(self, networks: dict[str, SynthesisNetwork], fallback: str) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(networks)
        self.fallback = fallback

    @property
    def pooled_text(self) -> bool:
        return self.networks[self.fallback].pooled_text

    def route(self, input_modality: str | None) -> str:
        """The key of the network that reads an input of ``input_modality`` (None: unknown)."""
        if input_modality is not None:
            key = canonical_modality(input_modality)
            if key in self.networks:
                return key
        return self.fallback

    def for_input(self, input_modality: str | None) -> SynthesisNetwork:
        """The network that reads an input of ``input_modality``."""
        return self.networks[self.route(input_modality)]


@register("routed", RoutedConfig)
def build_routed(config: RoutedConfig) -> RoutedNetwork:
    return RoutedNetwork(
        {modality: build(spec) for modality, spec in config.networks.items()}, config.fallback
    )


def make_routed(networks: dict[str, SynthesisNetwork], fallback: str) -> RoutedNetwork:
    """A routed model (with its spec) of trained networks, e.g. stage-2 runs' checkpoints."""
    specs = {modality: network.spec for modality, network in networks.items()}
    args = {"networks": specs, "fallback": fallback}
    spec = load_config({"name": "routed", "args": args})  # modalities checked and canonical
    routed = RoutedNetwork(
        {canonical_modality(modality): n for modality, n in networks.items()},
        spec["args"]["fallback"],
    )
    routed.spec = spec
    return routed
