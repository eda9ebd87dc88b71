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

``tumsyn synthesize`` needs both halves of the release: :func:`convert_official` with ``text=``
joins the stage-2 network and the text tower of the stage-1 CLIP checkpoint into one pipeline
checkpoint. Only the CLIP file's text keys are read (the file is memory-mapped), so its 0.95B
parameter image tower, and its optimizer state, are never loaded.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tumsyn.errors import ConfigError, InputFileError
from tumsyn.io import refuse_overwriting_inputs
from tumsyn.models.checkpoint import ensure_materialised, save_checkpoint
from tumsyn.models.pipeline import TextTowerConfig, make_pipeline
from tumsyn.models.registry import build
from tumsyn.models.text_encoder import TextEncoder

__all__ = ["convert_official", "load_official", "official_state_dict", "official_text_encoder"]

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


def _load(path: Path, mmap: bool) -> Any:
    if mmap:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):  # the legacy (non-zip) format cannot be mapped
                raise
    return torch.load(path, map_location="cpu", weights_only=True)


def official_state_dict(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, torch.Tensor]:
    """The state dict inside an official ``.pth`` file, ``module.`` prefixes removed.

    With ``mmap=True`` the tensors are memory-mapped from the file (read when used), where the
    file's format allows it.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such checkpoint")
    try:
        content = _load(path, mmap)
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


_STAGE = {"official-synth": "synthesis (stage 2)", "official-bmlip": "CLIP (stage 1)"}


def load_official(path: str | os.PathLike, *, expect: str | None = None):
    """Build the matching official configuration and load a published checkpoint into it.

    ``expect`` (``official-synth`` or ``official-bmlip``) refuses the other kind before building.
    """
    path = Path(path)
    state = official_state_dict(path)
    name = _config_for(state, path)
    if expect is not None and name != expect:
        raise ConfigError(f"{path}: an official {_STAGE[name]} checkpoint, not {_STAGE[expect]}")
    with torch.device("meta"):
        model = build(name)
    return _assign(model, state, f"{path}: does not match {name}")


def _assign(model: torch.nn.Module, state: Mapping[str, torch.Tensor], mismatch: str):
    """``state`` as the weights of a meta-device ``model`` (strict), ready for inference."""
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise ConfigError(f"{mismatch} ({str(error).strip().splitlines()[0]})") from None
    ensure_materialised(model)
    return model.eval()


def _is_text_key(key: str) -> bool:
    return key in ("positional_embedding", "text_projection") or key.startswith(
        ("token_embedding.", "transformer.", "ln_final.")
    )


def official_text_encoder(path: str | os.PathLike) -> TextEncoder:
    """The text tower of an official stage-1 checkpoint (``checkpoint_CLIP.pt``), float32.

    The official CLIP keeps the text tower's parameters at its top level under the names that
    :class:`TextEncoder` uses (``token_embedding.weight``, ``positional_embedding``,
    ``transformer.resblocks.N.*``, ``ln_final.*``, ``text_projection``), so they load key for key;
    ``visual.*`` and ``logit_scale`` are left in the file. The sizes are read from the shapes; the
    number of heads, which no shape records, is the official 8 (``CLIP/model_config.yaml``).
    """
    path = Path(path)
    state = official_state_dict(path, mmap=True)
    name = _config_for(state, path)
    if name != "official-bmlip":
        raise ConfigError(
            f"{path}: an official {_STAGE[name]} checkpoint; the text encoder comes from the "
            "CLIP (stage 1) one, checkpoint_CLIP.pt"
        )
    text = {key: value.float() for key, value in state.items() if _is_text_key(key)}
    del state  # unmaps the image tower and anything else in the file
    layers = {key.split(".")[2] for key in text if key.startswith("transformer.resblocks.")}
    try:
        vocab_size, width = text["token_embedding.weight"].shape
        args = {
            "context_length": text["positional_embedding"].shape[0],
            "vocab_size": vocab_size,
            "width": width,
            "layers": len(layers),
            "heads": TextTowerConfig().heads,
            "embed_dim": text["text_projection"].shape[1],
        }
    except KeyError as error:
        raise ConfigError(f"{path}: the text encoder's weights lack {error}") from None
    try:
        with torch.device("meta"):
            encoder = build({"name": "text", "args": args})
    except ConfigError as error:
        raise ConfigError(f"{path}: text encoder: {error}") from None
    return _assign(encoder, text, f"{path}: the text encoder's weights do not fit")


def convert_official(
    source: str | os.PathLike, target: str | os.PathLike, *, text: str | os.PathLike | None = None
) -> Path:
    """Convert an official ``.pth`` into a tumsyn safetensors checkpoint (weights + spec).

    Args:
        source: an official stage-2 (``checkpoint.pt``) or stage-1 (``checkpoint_CLIP.pt``) file.
        target: the ``.safetensors`` file to write.
        text: the official stage-1 file. With it, ``source`` must be the stage-2 file and the
            result is a pipeline checkpoint (text encoder + synthesis network) that ``tumsyn
            synthesize --checkpoint`` takes; without it, the one model of ``source``.
    """
    source = Path(source)
    if not source.is_file():
        raise InputFileError(f"{source}: no such checkpoint")
    if not str(target).endswith(".safetensors"):
        raise ConfigError(f"{target}: the converted checkpoint must end in .safetensors")
    refuse_overwriting_inputs(target, source, *([] if text is None else [text]))
    if text is None:
        model = load_official(source)
        return save_checkpoint(target, model, extra={"converted_from": source.name})
    text = Path(text)
    synth = load_official(source, expect="official-synth")
    encoder = official_text_encoder(text)
    text_dim = synth.spec["args"]["text_dim"]
    if encoder.embed_dim != text_dim:
        raise ConfigError(
            f"{text}: gives {encoder.embed_dim}-dimensional text features, "
            f"{source} takes {text_dim}"
        )
    pipeline = make_pipeline(encoder, synth)
    extra = {
        "name": f"official TUMSyn ({source.name} + {text.name})",
        "converted_from": {"synth": source.name, "text": text.name},
        # The published weights expect the official demo's input scaling, and its 60^3 patches:
        # the official fusion attends over the whole patch, so the patch size matters. Overlap 10
        # gives each voxel context; the demo's 30 (50%) only multiplies the work.
        "input_normalisation": "official",
        "patch_settings": {"patch_size": 60, "overlap": 10},
    }
    return save_checkpoint(target, pipeline, extra=extra)
