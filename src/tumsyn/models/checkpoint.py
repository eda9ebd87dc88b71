"""tumsyn checkpoints: safetensors weights with the model's spec in the file's metadata.

One file holds everything needed to rebuild the model (``load_checkpoint(path)``); nothing is
pickled, so loading a checkpoint cannot run code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from tumsyn.errors import ConfigError, InputFileError
from tumsyn.io import atomic_output

__all__ = [
    "ensure_materialised",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "save_checkpoint",
]

_SPEC_KEY = "tumsyn_spec"
_EXTRA_KEY = "tumsyn_extra"


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    *,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s weights and spec (and JSON-able ``extra`` facts) atomically.

    ``dtype`` (e.g. ``torch.float16``) stores floating-point tensors in that type, to halve a
    shipped file; :func:`load_checkpoint` turns them back into float32.
    """
    from safetensors.torch import save_file

    from tumsyn import __version__

    spec = getattr(model, "spec", None)
    if spec is None:
        raise ConfigError("the model has no spec: build it with tumsyn.models.build")
    state = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata = {
        _SPEC_KEY: json.dumps(spec),
        _EXTRA_KEY: json.dumps(extra or {}),
        "tumsyn_version": __version__,
    }
    path = Path(path)
    with atomic_output(path) as temporary:
        save_file(state, str(temporary), metadata=metadata)
    return path


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The spec, extra facts and version stored in a checkpoint, without loading the weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such checkpoint")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        if _saved_by_torch(path):
            raise ConfigError(
                f"{path}: a PyTorch .pt/.pth file, not a tumsyn checkpoint; convert the official "
                "TUMSyn release first: tumsyn convert-official checkpoint.pt OUT.safetensors "
                "--text checkpoint_CLIP.pt"
            ) from None
        raise ConfigError(
            f"{path}: not a safetensors checkpoint ({error}); official .pth files: "
            "tumsyn convert-official"
        ) from None
    if _SPEC_KEY not in metadata:
        raise ConfigError(f"{path}: a safetensors file without a tumsyn model spec")
    try:
        spec, extra = json.loads(metadata[_SPEC_KEY]), json.loads(metadata.get(_EXTRA_KEY, "{}"))
    except ValueError:
        spec, extra = None, None
    if not isinstance(spec, dict) or "name" not in spec or not isinstance(extra, dict):
        raise ConfigError(f"{path}: the checkpoint's recorded model spec is damaged")
    return {"spec": spec, "extra": extra, "version": metadata.get("tumsyn_version")}


def _saved_by_torch(path: Path) -> bool:
    """Whether a file starts as ``torch.save`` writes: a zip archive or (legacy) a pickle."""
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError:
        return False
    return magic == b"PK\x03\x04" or magic[:1] == b"\x80"


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu"):
    """Rebuild the model stored in a checkpoint and load its weights (in eval mode)."""
    from safetensors import safe_open

    from tumsyn.models.registry import build

    spec = read_checkpoint_metadata(path)["spec"]
    with torch.device("meta"):
        model = build(spec)
    # Tensor by tensor, each in its own (aligned) allocation: tensors sliced out of one file
    # buffer can sit at odd offsets, and CPU kernels then take other code paths whose results
    # differ in the last bit from those of the model that was saved.
    with safe_open(str(path), framework="pt", device=str(device)) as handle:
        state = {key: handle.get_tensor(key).clone() for key in handle.keys()}  # noqa: SIM118
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        first = str(error).splitlines()[1:2] or [str(error)]
        raise ConfigError(
            f"{path}: the weights do not fit the model the checkpoint describes "
            f"({first[0].strip()}); the file is damaged or was edited"
        ) from None
    ensure_materialised(model)
    model.spec = spec
    return model.eval()


def ensure_materialised(model: torch.nn.Module) -> None:
    """Fail loudly if a model built on the meta device still has a tensor without data."""
    empty = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if empty:
        raise RuntimeError(f"tensors not loaded from the checkpoint: {', '.join(empty[:5])}")
