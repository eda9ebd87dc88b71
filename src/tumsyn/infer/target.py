"""The target of a synthesis: a modality, a prompt or metadata, and fields, completed from defaults
and the source.

Layers, later ones winning: the modality's packaged default protocol (only for a modality name),
age and sex from the source's BIDS ``participants.tsv`` (likewise), the prompt or metadata, the
fields; a voxel size still missing comes from the source (rounded to 0.01 mm as prompts are).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tumsyn.errors import MetadataError, PromptTooLongError
from tumsyn.metadata import (
    ImagingMetadata,
    canonical_modality,
    default_protocol,
    find_participant,
    format_prompt,
    parse_prompt,
    prompt_voxel_size,
)
from tumsyn.metadata.bids import participant_fields

__all__ = ["checked_prompt", "resolve_target"]

_FIELDS = tuple(field.name for field in dataclasses.fields(ImagingMetadata))


def resolve_target(
    target: str | ImagingMetadata | None = None,
    *,
    fields: Mapping[str, Any] | None = None,
    source: str | os.PathLike | None = None,
    source_voxel_size: Sequence[float] | None = None,
    participants: str | os.PathLike | None = None,
) -> ImagingMetadata:
    """The complete target metadata of a synthesis request.

    Args:
        target: a modality name (``"FLAIR"``, or an alias: its packaged default protocol), a full
            prompt, an :class:`ImagingMetadata` (used as it is), or ``None`` (``fields`` must then
            name the modality).
        fields: ``ImagingMetadata`` fields that win over everything else; ``None`` values count
            as not given.
        source: the source image's path, for age and sex from its BIDS ``participants.tsv`` (only
            for a modality name) and for the voxel size if neither the target nor
            ``source_voxel_size`` gives one.
        source_voxel_size: the source's voxel size in mm (rounded as prompts are).
        participants: the BIDS ``participants.tsv`` (default: found from the source's BIDS root).

    Raises:
        MetadataError: no modality, an unknown modality or field, inconsistent values, a prompt
            that does not parse, an unreadable participants file.
        ImageError: the voxel size is needed from the source's header, which cannot be read.

    Example:
        >>> resolve_target("flair", fields={"age": 70}, source_voxel_size=(1, 1, 1)).ti
        1800.0
    """
    given = _given_fields(fields)
    if isinstance(target, ImagingMetadata):
        metadata = target
    elif isinstance(target, str) and _is_modality_name(target):
        metadata = _defaults(target, source, participants)
    elif isinstance(target, str):
        metadata = parse_prompt(target)
    elif target is None and given.get("modality") is not None:
        metadata = _defaults(str(given["modality"]), source, participants)
    elif target is None:
        raise MetadataError("say which contrast to make: a modality (e.g. FLAIR) or a prompt")
    else:
        raise MetadataError(
            "the target must be a modality name, a prompt or an ImagingMetadata, got "
            f"{type(target).__name__}"
        )
    metadata = metadata.replace(**given)
    if metadata.modality is None:
        raise MetadataError("the target names no modality: add one (e.g. FLAIR) to the prompt")
    if metadata.voxel_size is None and source_voxel_size is not None:
        metadata = metadata.replace(voxel_size=prompt_voxel_size(source_voxel_size))
    if metadata.voxel_size is None and source is not None:
        metadata = metadata.replace(voxel_size=_header_voxel_size(Path(source)))
    return metadata


def checked_prompt(metadata: ImagingMetadata) -> str:
    """The prompt text of ``metadata``, refused if the text encoder could not read it whole.

    Raises:
        PromptTooLongError: more tokens than the model's context length.
    """
    from tumsyn.text import CONTEXT_LENGTH, ClipTokenizer

    prompt = format_prompt(metadata)
    needed = ClipTokenizer().count(prompt)
    if needed > CONTEXT_LENGTH:
        raise PromptTooLongError(
            f"the prompt needs {needed} tokens, more than the model's {CONTEXT_LENGTH}: use fewer "
            f"decimals in the values: {prompt}"
        )
    return prompt


def _given_fields(fields: Mapping[str, Any] | None) -> dict[str, Any]:
    given = {name: value for name, value in (fields or {}).items() if value is not None}
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise MetadataError(
            f"unknown metadata field {unknown[0]!r}; the fields are {', '.join(_FIELDS)}"
        )
    return given


def _is_modality_name(text: str) -> bool:
    if ":" in text or ";" in text:
        return False
    try:
        canonical_modality(text)
    except MetadataError:
        return False
    return True


def _defaults(
    modality: str, source: str | os.PathLike | None, participants: str | os.PathLike | None
) -> ImagingMetadata:
    """The modality's packaged default protocol (without its voxel size), with age and sex from
    the source's BIDS participants file when there is one."""
    defaults = default_protocol(canonical_modality(modality)).metadata
    metadata = dataclasses.replace(defaults, voxel_size=None)
    if source is not None and Path(source).is_file():
        participant = find_participant(source, participants)
        if participant:
            metadata = metadata.replace(**participant_fields(participant))
    return metadata


def _header_voxel_size(path: Path) -> tuple[float, float, float]:
    from tumsyn.io import read_grid

    return prompt_voxel_size(read_grid(path).voxel_size)
