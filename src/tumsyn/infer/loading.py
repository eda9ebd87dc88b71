"""Which pipeline checkpoint synthesis uses, and what it records, read from its header alone."""

from __future__ import annotations

import dataclasses
import os
from importlib import resources
from pathlib import Path

from tumsyn.errors import ConfigError
from tumsyn.metadata import ImagingMetadata
from tumsyn.models.checkpoint import read_checkpoint_metadata

__all__ = [
    "BUNDLED_CHECKPOINT",
    "BUNDLED_CHECKPOINTS",
    "IGNORABLE_PROMPT_FIELDS",
    "bundled_checkpoint_path",
    "checkpoint_path",
    "ignored_prompt_fields",
    "model_name",
    "read_pipeline_metadata",
]

# The prompt fields a model may be packaged to leave out: every field but the two synthesis needs.
IGNORABLE_PROMPT_FIELDS = tuple(
    field.name
    for field in dataclasses.fields(ImagingMetadata)
    if field.name not in ("modality", "voxel_size")
)

# The models shipped inside the package, the default first: model v2 (a network per input
# modality, README "Model card"), then model v1, kept so that its numbers remain reproducible.
BUNDLED_CHECKPOINTS = ("tumsyn-v2", "tumsyn-tiny")
BUNDLED_CHECKPOINT = BUNDLED_CHECKPOINTS[0]


def bundled_checkpoint_path(name: str = BUNDLED_CHECKPOINT) -> Path:
    """A model shipped inside the package (default: the default model)."""
    return Path(str(resources.files("tumsyn") / "checkpoints" / f"{name}.safetensors"))


def checkpoint_path(checkpoint: str | os.PathLike | None) -> Path:
    """The file of ``checkpoint``: ``None`` is the default model, a bundled name its file, anything
    else a path."""
    if checkpoint is None:
        return bundled_checkpoint_path()
    if os.fspath(checkpoint) in BUNDLED_CHECKPOINTS:
        return bundled_checkpoint_path(os.fspath(checkpoint))
    return Path(checkpoint)


def read_pipeline_metadata(checkpoint: str | os.PathLike | None) -> dict:
    """What a pipeline checkpoint records (header only, no weights), with its ``path``.

    Args:
        checkpoint: a ``.safetensors`` path, a bundled model's name (``BUNDLED_CHECKPOINTS``), or
            ``None`` for the default model.

    Raises:
        InputFileError: no such checkpoint.
        ConfigError: not a safetensors checkpoint, or not a pipeline (text encoder + synthesis
            network).
    """
    path = checkpoint_path(checkpoint)
    meta = read_checkpoint_metadata(path)
    if meta["spec"]["name"] != "pipeline":
        raise ConfigError(
            f"{path}: a {meta['spec']['name']} checkpoint; synthesis needs a pipeline "
            "(text encoder + synthesis network): for the official weights run tumsyn "
            "convert-official checkpoint.pt OUT.safetensors --text checkpoint_CLIP.pt; "
            "for tumsyn's, scripts/package_release.py"
        )
    return {**meta, "path": str(path)}


def pipeline_networks(meta: dict) -> tuple[tuple[str, ...], str | None]:
    """The keys of a routed pipeline's networks (``T1w``, ``T1w:FLAIR``: see
    :mod:`tumsyn.models.routed`) and its fallback, from :func:`read_pipeline_metadata`'s header;
    ``((), None)`` for a pipeline with one network for every input. What ``init_network`` of a
    fine-tuning run may name."""
    synth = meta["spec"]["args"]["synth"]
    if synth["name"] != "routed":
        return (), None
    return tuple(synth["args"]["networks"]), synth["args"]["fallback"]


def model_name(meta: dict) -> str:
    """The model's recorded name (or its checkpoint's file name), for sidecars and descriptions."""
    return meta["extra"].get("name", Path(meta["path"]).name)


def ignored_prompt_fields(meta: dict) -> tuple[str, ...]:
    """The prompt fields a pipeline was packaged to leave out of every prompt (its
    ``ignored_prompt_fields``; ``scripts/package_release.py --ignore-prompt-fields``).

    Why a model would: tumsyn's models learn from simulated subjects whose tissue relaxation does
    not depend on age or sex, so these fields carry no contrast there, and a network that leans on
    them anyway renders a real scan differently by the age it is told (README, model card).

    Raises:
        ConfigError: a recorded field that no prompt has, or one that synthesis needs.
    """
    fields = tuple(meta["extra"].get("ignored_prompt_fields", ()))
    unknown = [name for name in fields if name not in IGNORABLE_PROMPT_FIELDS]
    if unknown:
        raise ConfigError(
            f"{meta['path']}: records ignored prompt fields {unknown}; a model may leave out "
            f"only {', '.join(IGNORABLE_PROMPT_FIELDS)}"
        )
    return fields
