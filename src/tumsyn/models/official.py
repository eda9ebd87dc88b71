"""Loading the published TUMSyn checkpoints (``.pth``) safely, and converting them.

The official files are pickles. They are read with ``torch.load(weights_only=True)`` only, which
unpickles tensors and plain containers and refuses anything that would run code. Layouts handled
(facts measured from the official code, ``shared/reference``):

- stage 2: ``{"model_G": {"name": "lccd", "args": {...}, "sd_G": state_dict}, "optimizer_G": ...,
  "epoch": int}``;
- stage 1: ``{"model_state_dict": state_dict, ...}``;
- a bare state dict, or one nested under ``model`` / ``state_dict``; keys may carry the
  ``module.`` prefix of ``DataParallel``.

The configuration (``official-synth`` or ``official-bmlip``) is recognised from the keys.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tumsyn.errors import ConfigError, InputFileError
from tumsyn.models.checkpoint import ensure_materialised, save_checkpoint
from tumsyn.models.registry import build

__all__ = ["convert_official", "load_official", "official_state_dict"]

_NESTED = ("sd_G", "model_state_dict", "state_dict", "model")


def _find_state_dict(content: Any) -> Mapping[str, torch.Tensor] | None:
    """The first mapping of name -> tensor, searching the known nesting keys depth-first."""
    if isinstance(content, Mapping):
        if content and all(isinstance(v, torch.Tensor) for v in content.values()):
            return content
        for key in ("model_G", *_NESTED):
            found = _find_state_dict(content.get(key))
            if found is not None:
                return found
    return None


def official_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict inside an official ``.pth`` file, ``module.`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such checkpoint")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ConfigError(
            f"{path}: not a checkpoint that can be read safely ({first_line})"
        ) from None
    state = _find_state_dict(content)
    if state is None:
        raise ConfigError(f"{path}: no state dict found (looked for {', '.join(_NESTED)})")
    return {key.removeprefix("module."): value for key, value in state.items()}


def _config_for(state: Mapping[str, torch.Tensor], path: Path) -> str:
    if "imnet.layers.0.weight" in state and "encoder.head.0.weight" in state:
        return "official-synth"
    if "token_embedding.weight" in state and "visual.conv1.weight" in state:
        return "official-bmlip"
    raise ConfigError(
        f"{path}: the weights are neither an official synthesis nor an official CLIP model "
        f"(first keys: {', '.join(list(state)[:3])})"
    )


def load_official(path: str | os.PathLike):
    """Build the matching official configuration and load a published checkpoint into it."""
    path = Path(path)
    state = official_state_dict(path)
    name = _config_for(state, path)
    with torch.device("meta"):
        model = build(name)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        summary = str(error).strip().splitlines()[0]
        raise ConfigError(f"{path}: does not match {name} ({summary})") from None
    ensure_materialised(model)
    return model.eval()


def convert_official(source: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Convert an official ``.pth`` into a tumsyn safetensors checkpoint (weights + spec)."""
    model = load_official(source)
    return save_checkpoint(target, model, extra={"converted_from": Path(source).name})
