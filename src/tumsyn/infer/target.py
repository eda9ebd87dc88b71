"""The target of a synthesis: a prompt and/or metadata flags, completed from defaults and source.

Layers, later ones winning: the modality's packaged default protocol (only without a prompt), age
and sex from the source's BIDS ``participants.tsv`` (only without a prompt), the prompt, the flags;
a voxel size still missing comes from the source's header (rounded to 0.01 mm as prompts are).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tumsyn.errors import ImageError, TumsynError
from tumsyn.metadata import (
    ImagingMetadata,
    canonical_modality,
    default_protocol,
    find_participant,
    parse_prompt,
    prompt_voxel_size,
)
from tumsyn.metadata.bids import participant_fields

__all__ = ["synthesis_target"]


def synthesis_target(
    source: str | os.PathLike | None,
    *,
    prompt: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    participants: str | os.PathLike | None = None,
) -> ImagingMetadata:
    """The target metadata for synthesizing from ``source``.

    Args:
        source: the source image (NIfTI); ``None`` checks the request alone (no participant
            lookup, and the voxel size stays unknown unless given).
        prompt: a full target prompt; without one, the defaults come from the packaged default
            protocol of the modality in ``overrides``.
        overrides: ``ImagingMetadata`` fields that win over everything else (``None``: not given).
        participants: the BIDS ``participants.tsv`` (default: found from the source's BIDS root).

    Raises:
        TumsynError: neither a modality nor a prompt says which contrast to make.
        MetadataError: an unknown modality, inconsistent values, an unreadable participants file.
        ImageError: the voxel size is needed from the source's header, which cannot be read.

    Example:
        >>> synthesis_target(None, overrides={"modality": "flair", "age": 70}).ti
        1800.0
    """
    target = parse_prompt(prompt) if prompt else ImagingMetadata()
    flags = dict(overrides or {})
    modality = flags.get("modality") or target.modality
    if modality is None:
        raise TumsynError("say which contrast to make: --modality (e.g. FLAIR) or --prompt")
    if not prompt:
        defaults = default_protocol(canonical_modality(modality)).metadata
        target = dataclasses.replace(defaults, voxel_size=None)
        if source is not None and Path(source).is_file():
            participant = find_participant(source, participants)
            if participant:
                target = target.replace(**participant_fields(participant))
    target = target.replace(**flags)
    if target.voxel_size is None and source is not None:
        target = target.replace(voxel_size=_header_voxel_size(Path(source)))
    return target


def _header_voxel_size(path: Path) -> tuple[float, float, float]:
    import nibabel as nib

    from tumsyn.io import voxel_sizes

    try:
        sizes = voxel_sizes(nib.load(path).affine)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError):
        raise ImageError(f"{path}: cannot read the image header") from None
    return prompt_voxel_size(sizes)
