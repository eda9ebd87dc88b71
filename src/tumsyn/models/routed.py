"""One synthesis network per input modality: the input's modality picks the network (model v2).

A ``tumsyn-tiny`` network fine-tuned on randomised inputs of one sequence family learns that
family's mapping; trained on every family at once it loses grey/white contrast, and telling it
the input's contrast through a thumbnail of the whole input did not help (docs/decisions.md). A
routed model therefore holds one ordinary ``synth`` network per input modality and names the one
that reads inputs of any other or of an unknown modality (``fallback``). A network may also be
kept for one input modality *and* one target modality (key ``INPUT:TARGET``, e.g.
``T1w:FLAIR``): a specialist that answers that target only, where the input's network serves
every other. Its checkpoint keys are the networks' own under ``networks.<key>.``, so a routed
model is assembled from ordinary stage-2 runs (``scripts/package_release.py``).
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from pydantic import field_validator, model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.errors import MetadataError
from tumsyn.metadata import canonical_modality
from tumsyn.models.registry import build, load_config, parse_config, register
from tumsyn.models.synth import SynthesisNetwork, fusion_takes_pooled_text

__all__ = [
    "RoutedConfig",
    "RoutedNetwork",
    "canonical_route_key",
    "make_routed",
    "reads_by_guess",
    "route_key",
]


class RoutedConfig(StrictConfig):
    """``networks``: input modality (or ``INPUT:TARGET``) -> a ``synth`` spec; ``fallback``:
    one of the input modalities."""

    networks: dict[str, dict[str, Any]]
    fallback: str

    @field_validator("networks")
    @classmethod
    def _synth_specs(cls, networks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not networks:
            raise ValueError("a routed model needs at least one network")
        specs = {}
        for name, spec in networks.items():
            key = canonical_route_key(name)
            if key in specs:
                raise ValueError(f"two networks for {_described(key)}")
            specs[key] = load_config(spec)
            if specs[key]["name"] != "synth":
                raise ValueError(f"the {key} network must be a 'synth' spec")
        if len({spec["args"]["text_dim"] for spec in specs.values()}) > 1:
            raise ValueError("every network must take prompt features of one size (text_dim)")
        if len({_pooled(spec) for spec in specs.values()}) > 1:
            raise ValueError("every network must take the prompt in one form (fusion kind)")
        for key in specs:
            source = key.partition(":")[0]
            if source not in specs:
                raise ValueError(f"the network for {_described(key)} needs one for {source} inputs")
        return specs

    @field_validator("fallback")
    @classmethod
    def _modality(cls, fallback: str) -> str:
        if ":" in fallback:
            raise ValueError(f"the fallback {fallback!r} must read inputs of every target")
        return canonical_route_key(fallback)

    @model_validator(mode="after")
    def _fallback_is_a_network(self) -> RoutedConfig:
        if self.fallback not in self.networks:
            raise ValueError(
                f"fallback {self.fallback!r} is not one of the networks "
                f"({', '.join(k for k in self.networks if ':' not in k)})"
            )
        return self

    @property
    def text_dim(self) -> int:
        return parse_config(self.networks[self.fallback]).text_dim


def route_key(input_modality: str, target_modality: str | None = None) -> str:
    """The key of a network for inputs of ``input_modality`` (and only ``target_modality``
    outputs, if given), canonically spelled: ``T1w``, ``T1w:FLAIR``."""
    key = canonical_modality(input_modality)
    return key if target_modality is None else f"{key}:{canonical_modality(target_modality)}"


def reads_by_guess(networks: Container[str], input_modality: str | None) -> bool:
    """Whether a routed model with these network keys reads an input of ``input_modality``
    (None: unknown) by what its intensities look like (:mod:`tumsyn.infer.modality_guess`):
    when it has no network of that modality's own. Takes the keys, not the model, so that what
    only reads a checkpoint's header (``tumsyn info``) answers as the loaded model does."""
    return input_modality is None or route_key(input_modality) not in networks


def canonical_route_key(key: str) -> str:
    """:func:`route_key` of a written ``INPUT`` or ``INPUT:TARGET`` key (a spec's, a training
    config's ``init_network``); raises ValueError, which pydantic reports, for a bad modality."""
    source, _, target = key.partition(":")
    try:
        return route_key(source, target or None)
    except MetadataError as error:
        raise ValueError(str(error)) from None


def _described(key: str) -> str:
    source, _, target = key.partition(":")
    return f"{source} inputs" + (f" to {target}" if target else "")


def _pooled(spec: dict[str, Any]) -> bool:
    return fusion_takes_pooled_text(spec["args"]["fusion"]["kind"])


class RoutedNetwork(nn.Module):
    """Synthesis networks keyed by the input modality they read (and, for a specialist, the
    target modality it makes: :func:`route_key`).

    Args:
        networks: key (canonical spelling) -> network.
        fallback: the key of the network for inputs of any other or an unknown modality.
    """

    def __init__(self, networks: dict[str, SynthesisNetwork], fallback: str) -> None:
        super().__init__()
        self.networks = nn.ModuleDict(networks)
        self.fallback = fallback

    @property
    def pooled_text(self) -> bool:
        return self.networks[self.fallback].pooled_text

    def route(self, input_modality: str | None, target_modality: str | None = None) -> str:
        """The key of the network that reads an input of ``input_modality`` (None: unknown)
        into ``target_modality`` (None: any): the input's network, or the fallback, or that
        network's specialist for the target where there is one."""
        known = None if input_modality is None else route_key(input_modality)
        base = known if known in self.networks else self.fallback
        if target_modality is not None and route_key(base, target_modality) in self.networks:
            return route_key(base, target_modality)
        return base

    def for_input(
        self, input_modality: str | None, target_modality: str | None = None
    ) -> SynthesisNetwork:
        """The network that reads an input of ``input_modality`` into ``target_modality``."""
        return self.networks[self.route(input_modality, target_modality)]


@register("routed", RoutedConfig)
def build_routed(config: RoutedConfig) -> RoutedNetwork:
    return RoutedNetwork(
        {modality: build(spec) for modality, spec in config.networks.items()}, config.fallback
    )


def make_routed(networks: dict[str, SynthesisNetwork], fallback: str) -> RoutedNetwork:
    """A routed model (with its spec) of trained networks, e.g. stage-2 runs' checkpoints,
    keyed by input modality or ``INPUT:TARGET``."""
    specs = {modality: network.spec for modality, network in networks.items()}
    args = {"networks": specs, "fallback": fallback}
    spec = load_config({"name": "routed", "args": args})  # modalities checked and canonical
    routed = RoutedNetwork(
        {canonical_route_key(key): n for key, n in networks.items()}, spec["args"]["fallback"]
    )
    routed.spec = spec
    return routed
