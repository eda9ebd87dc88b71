"""Reading the project's YAML files (protocols, model and training configurations) one way."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tumsyn.errors import ConfigError

__all__ = ["read_yaml"]


def read_yaml(path: str | os.PathLike, *, missing: str) -> Any:
    """Parsed content of a YAML file (safe loader); ``missing`` completes the not-found message.

    Raises:
        ConfigError: the file does not exist or is not valid YAML (first line of the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {missing}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first_line})") from None
