"""Reading the project's YAML files (protocols, model and training configurations) one way.

A file a user names and a file the package ships go through the same parser, so a packaged file
fails (in a development checkout) with the same message a user's file would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tumsyn.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["packaged_yaml_names", "read_packaged_or_path_yaml", "read_yaml"]

_SUFFIX = ".yaml"


def read_yaml(path: str | os.PathLike, *, missing: str) -> Any:
    """Parsed content of a YAML file (safe loader); ``missing`` completes the not-found message.

    Raises:
        ConfigError: the file does not exist or is not valid YAML (first line of the reason).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: {missing}")
    return _parse(path, str(path))


def _parse(file: Path | Traversable, where: str) -> Any:
    """Content of ``file`` by the safe loader; a decoding or syntax error names ``where``.

    Only the first line of the parser's reason is kept: the rest repeats the offending text with
    a caret, which reads badly inside a one-line error.
    """
    try:
        return yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        first_line = str(error).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML ({first_line})") from None


def packaged_yaml_names(package_folder: Traversable) -> list[str]:
    """Names (without ``.yaml``) of the YAML files in a folder of the package, sorted.

    The folder's content is the list, so shipping another file is all it takes to add a name.
    """
    return sorted(
        entry.name.removesuffix(_SUFFIX)
        for entry in package_folder.iterdir()
        if entry.name.endswith(_SUFFIX) and entry.is_file()
    )


def read_packaged_or_path_yaml(
    source: str | os.PathLike, package_folder: Traversable, *, kind: str
) -> tuple[Any, str]:
    """Content of a packaged YAML file named ``source``, or of the YAML file at path ``source``.

    A string that names a file of ``package_folder`` means that file; anything else is a path. The
    second value names the source for error messages (``"<kind> '<name>'"`` or the path).

    Args:
        package_folder: the package folder of the named files (``importlib.resources.files``).
        kind: what the files hold (``"configuration"``), for messages.

    Raises:
        ConfigError: no such packaged name or file (the message lists the packaged names), or
            not valid YAML.
    """
    names = packaged_yaml_names(package_folder)
    if isinstance(source, str) and source in names:
        where = f"{kind} '{source}'"
        return _parse(package_folder / f"{source}{_SUFFIX}", where), where
    missing = f"no such {kind} file or packaged name (packaged: {', '.join(names)})"
    return read_yaml(source, missing=missing), str(source)
