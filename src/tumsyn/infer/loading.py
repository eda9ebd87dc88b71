"""Which pipeline checkpoint synthesis uses, and what it records, read from its header alone."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from tumsyn.errors import ConfigError
from tumsyn.models.checkpoint import read_checkpoint_metadata

__all__ = ["BUNDLED_CHECKPOINT", "bundled_checkpoint_path", "model_name", "read_pipeline_metadata"]

BUNDLED_CHECKPOINT = "tumsyn-tiny"


def bundled_checkpoint_path() -> Path:
    """The model shipped inside the package."""
    return Path(
        str(resources.files("tumsyn") / "checkpoints" / f"{BUNDLED_CHECKPOINT}.safetensors")
    )


def read_pipeline_metadata(checkpoint: str | os.PathLike | None) -> dict:
    """What a pipeline checkpoint records (header only, no weights), with its ``path``.

    Args:
        checkpoint: a ``.safetensors`` path, or ``None`` / ``"tumsyn-tiny"`` for the bundled model.

    Raises:
        InputFileError: no such checkpoint.
        ConfigError: not a safetensors checkpoint, or not a pipeline (text encoder + synthesis
            network).
    """
    path = (
        bundled_checkpoint_path() if checkpoint in (None, BUNDLED_CHECKPOINT) else Path(checkpoint)
    )
    meta = read_checkpoint_metadata(path)
    if meta["spec"]["name"] != "pipeline":
        raise ConfigError(
            f"{path}: a {meta['spec']['name']} checkpoint; synthesis needs a pipeline "
            "(text encoder + synthesis network): for the official weights run tumsyn "
            "convert-official checkpoint.pt OUT.safetensors --text checkpoint_CLIP.pt; "
            "for tumsyn's, scripts/package_release.py"
        )
    return {**meta, "path": str(path)}


def model_name(meta: dict) -> str:
    """The model's recorded name (or its checkpoint's file name), for sidecars and descriptions."""
    return meta["extra"].get("name", Path(meta["path"]).name)
