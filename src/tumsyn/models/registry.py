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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tumsyn.errors import ConfigError
from tumsyn.yamlfiles import read_yaml

__all__ = ["StrictConfig", "build", "list_configs", "load_config", "register"]


class StrictConfig(BaseModel):
    """Base of every config section: unknown keys are errors, values are checked, immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


_FAMILIES: dict[str, tuple[type[StrictConfig], Callable[[Any], Any]]] = {}


def register(name: str, config_class: type[StrictConfig]) -> Callable:
    """Decorator: ``builder(config) -> nn.Module`` builds family ``name`` from ``config_class``."""

    def decorator(builder: Callable) -> Callable:
        _FAMILIES[name] = (config_class, builder)
        return builder

    return decorator


def _configs_folder():
    return resources.files("tumsyn") / "configs"


def list_configs() -> list[str]:
    """Names of the packaged configurations."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _configs_folder().iterdir()
        if entry.name.endswith(".yaml")
    )


def _read(source: str | os.PathLike) -> tuple[Any, str]:
    if isinstance(source, str) and source in list_configs():
        return yaml.safe_load((_configs_folder() / f"{source}.yaml").read_text()), source
    missing = f"no such configuration file or packaged name (packaged: {', '.join(list_configs())})"
    return read_yaml(source, missing=missing), str(source)


def _first_error(error: ValidationError) -> str:
    detail = error.errors()[0]
    where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
    return f"{where}: {detail['msg']}"


def load_config(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """A validated spec ``{"name": family, "args": {...}}`` from a name, a YAML file or a mapping.

    Defaults are filled in, so the returned spec is complete.

    Raises:
        ConfigError: unknown name or file, bad YAML, unknown family, unknown keys, wrong types.
    """
    content, where = (dict(source), "config") if isinstance(source, Mapping) else _read(source)
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
        raise ConfigError(f"{where}: {_first_error(error)}") from None
    except TypeError as error:
        raise ConfigError(f"{where}: 'args' must be a mapping ({error})") from None
    return {"name": family, "args": config.model_dump(mode="json")}


def build(source: str | os.PathLike | Mapping[str, Any]):
    """Build a model from a configuration name, YAML file or spec; ``model.spec`` records it."""
    spec = load_config(source)
    config_class, builder = _FAMILIES[spec["name"]]
    model = builder(config_class(**spec["args"]))
    model.spec = spec
    return model
