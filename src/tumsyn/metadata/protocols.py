"""Protocol files: named acquisition protocols (YAML), as :class:`ImagingMetadata` records.

The package ships two: ``default`` (one typical 3 T protocol per modality at 1 mm, what the
simulator renders unless told otherwise) and ``library`` (typical 1.5/3/7 T vendor protocols at
their native voxel sizes). A protocol file is::

    protocols:
      - {name: mprage, modality: T1w, field_strength: 3.0, manufacturer: Siemens,
         voxel_size: [1, 1, 1], tr: 2300, te: 2.98, ti: 900, flip_angle: 9}

``name`` becomes the BIDS ``acq-`` label, so it is letters and digits, and unique per modality.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from tumsyn.errors import ConfigError, MetadataError
from tumsyn.metadata.record import ImagingMetadata
from tumsyn.yamlfiles import read_packaged_or_path_yaml

__all__ = ["Protocol", "default_protocol", "load_protocols"]

_FIELDS = {"name", "modality", "field_strength", "manufacturer", "voxel_size"}
_FIELDS |= {"tr", "te", "ti", "flip_angle"}
_LABEL = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class Protocol:
    """A named acquisition protocol."""

    name: str
    metadata: ImagingMetadata


def _protocol(entry: Any, where: str) -> Protocol:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a mapping of protocol settings, got {entry!r}")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(
            f"{where}: unknown setting(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_FIELDS))}"
        )
    name = entry.get("name")
    if not isinstance(name, str) or not _LABEL.fullmatch(name):
        raise ConfigError(f"{where}: name must be letters and digits (a BIDS label), got {name!r}")
    if entry.get("modality") is None:
        raise ConfigError(f"{where}: protocol {name!r} needs a modality")
    settings = {key: value for key, value in entry.items() if key != "name"}
    if isinstance(settings.get("voxel_size"), list):
        settings["voxel_size"] = tuple(settings["voxel_size"])
    try:
        return Protocol(name, ImagingMetadata(**settings))
    except MetadataError as error:
        raise ConfigError(f"{where}: protocol {name!r}: {error}") from None


def load_protocols(source: str | os.PathLike = "default") -> list[Protocol]:
    """Protocols from a packaged set (``default``, ``library``) or a YAML file.

    Raises:
        ConfigError: missing file, bad YAML, unknown settings, invalid values, or two protocols
            with the same name and modality.
    """
    folder = resources.files("tumsyn.metadata") / "protocols"
    content, where = read_packaged_or_path_yaml(source, folder, kind="protocol set")
    if not isinstance(content, dict) or not isinstance(content.get("protocols"), list):
        raise ConfigError(f"{where}: expected a top-level 'protocols:' list")
    if set(content) != {"protocols"}:
        extra = ", ".join(sorted(set(content) - {"protocols"}))
        raise ConfigError(f"{where}: unknown top-level key(s) {extra}; only 'protocols' is allowed")
    if not content["protocols"]:
        raise ConfigError(f"{where}: the 'protocols' list is empty")
    protocols = [
        _protocol(entry, f"{where}, protocol {number}")
        for number, entry in enumerate(content["protocols"], start=1)
    ]
    seen: set[tuple[str, str]] = set()
    for protocol in protocols:
        key = (protocol.name, str(protocol.metadata.modality))
        if key in seen:
            raise ConfigError(f"{where}: two {key[1]} protocols are named {key[0]!r}")
        seen.add(key)
    return protocols


def default_protocol(modality: str) -> Protocol:
    """The packaged default protocol of a modality (``modality`` already canonical)."""
    for protocol in load_protocols("default"):
        if protocol.metadata.modality == modality:
            return protocol
    raise MetadataError(f"no default protocol for modality {modality!r}")
