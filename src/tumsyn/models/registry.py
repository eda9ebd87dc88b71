"""The one factory: model configurations (YAML, validated on load) and ``build``.

A configuration is LIIF's spec, ``{"name": FAMILY, "args": {...}}``: the family names the kind of
model (``bmlip``, ``synth``) and ``args`` its settings, validated by the family's pydantic class
(unknown keys and wrong types are refused with the setting's name). The package ships one YAML file
per named configuration in ``tumsyn/configs/`` (``tumsyn models`` lists them). Every built module
carries its spec in ``module.spec``, which checkpoints store, so a checkpoint rebuilds its model.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from tumsyn.config import StrictConfig, validation_message
from tumsyn.errors import ConfigError
from tumsyn.yamlfiles import packaged_yaml_names, read_packaged_or_path_yaml

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["build", "list_configs", "load_config", "parse_config", "register"]

_FAMILIES: dict[str, tuple[type[StrictConfig], Callable[[Any], Any]]] = {}


def register(name: str, config_class: type[StrictConfig]) -> Callable:
    """Decorator: ``builder(config) -> nn.Module`` builds family ``name`` from ``config_class``."""

    def decorator(builder: Callable) -> Callable:
        _FAMILIES[name] = (config_class, builder)
        return builder

    return decorator


def _configs_folder() -> Traversable:
    """Where the named configurations ship: found through the package, so installs work too."""
    return resources.files("tumsyn") / "configs"


def list_configs() -> list[str]:
    """Names of the packaged configurations."""
    return packaged_yaml_names(_configs_folder())


def load_config(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A validated spec ``{"name": family, "args": {...}}`` from a name, a YAML file or a mapping.

    Defaults are filled in, so the returned spec is complete.

    Raises:
        ConfigError: unknown name or file, bad YAML, unknown family, unknown keys, wrong types.
    """
    if isinstance(source, Mapping):
        content, where = dict(source), "config"
    else:
        content, where = read_packaged_or_path_yaml(source, _configs_folder(), kind="configuration")
    if not isinstance(content, dict) or set(content) - {"name", "args"} or "name" not in content:
        raise ConfigError(f"{where}: expected a mapping with 'name' and 'args'")
    family = content["name"]
    if family not in _FAMILIES:
        raise ConfigError(
            f"{where}: unknown model {family!r}; known: {', '.join(sorted(_FAMILIES))}"
        )
    config_class, _ = _FAMILIES[family]
    try:
        config = config_class(**(content.get("args") or {}))
    except ValidationError as error:
        raise ConfigError(f"{where}: {validation_message(error)}") from None
    except TypeError as error:
        raise ConfigError(f"{where}: 'args' must be a mapping ({error})") from None
    return {"name": family, "args": config.model_dump(mode="json")}


def parse_config(source: str | os.PathLike | Mapping[str, Any]) -> StrictConfig:
    """The validated settings object of a spec (its family's pydantic class), without building."""
    spec = load_config(source)
    config_class, _ = _FAMILIES[spec["name"]]
    return config_class(**spec["args"])


def build(source: str | os.PathLike | Mapping[str, Any]):
    """Build a model from a configuration name, YAML file or spec; ``model.spec`` records it."""
    spec = load_config(source)
    _, builder = _FAMILIES[spec["name"]]
    model = builder(parse_config(spec))
    model.spec = spec
    return model
