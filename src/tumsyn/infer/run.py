"""``tumsyn synthesize`` as a library call: load, synthesize, write image and sidecar atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from tumsyn.data.volumes import NORMALISERS
from tumsyn.errors import ConfigError, ImageError
from tumsyn.infer.coverage import coverage_warnings
from tumsyn.infer.volume import synthesize_volume
from tumsyn.io import atomic_output, load_nifti, save_nifti
from tumsyn.metadata import ImagingMetadata, format_prompt, sidecar_from_metadata
from tumsyn.models.checkpoint import load_checkpoint, read_checkpoint_metadata
from tumsyn.models.pipeline import SynthesisPipeline

__all__ = [
    "BUNDLED_CHECKPOINT",
    "LoadedPipeline",
    "SynthesisResult",
    "check_patch_settings",
    "load_pipeline",
    "open_pipeline",
    "patch_settings",
    "read_pipeline_metadata",
    "synthesize_file",
]

BUNDLED_CHECKPOINT = "tumsyn-tiny"


def bundled_checkpoint_path() -> Path:
    return Path(
        str(resources.files("tumsyn") / "checkpoints" / f"{BUNDLED_CHECKPOINT}.safetensors")
    )


def read_pipeline_metadata(checkpoint: str | os.PathLike | None) -> dict:
    """What a pipeline checkpoint records (header only, no weights), with its ``path``.

    Raises:
        InputFileError: no such checkpoint.
        ConfigError: the checkpoint is not a pipeline (text encoder + synthesis network).
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


def load_pipeline(
    checkpoint: str | os.PathLike | None, device: torch.device
) -> tuple[SynthesisPipeline, dict]:
    """A pipeline checkpoint (default: the bundled model) on ``device``, with its recorded facts."""
    meta = read_pipeline_metadata(checkpoint)
    return load_checkpoint(Path(meta["path"]), device=device), meta


@dataclass(frozen=True)
class LoadedPipeline:
    """A pipeline on its device with its checkpoint's facts: load once, synthesize many files."""

    pipeline: SynthesisPipeline
    meta: dict
    device: torch.device

    @property
    def name(self) -> str:
        """The model's recorded name (or its file name)."""
        return self.meta["extra"].get("name", Path(self.meta["path"]).name)


def open_pipeline(
    checkpoint: str | os.PathLike | None = None, *, device: str | torch.device = "auto"
) -> LoadedPipeline:
    """Load a pipeline checkpoint (default: the bundled model) for :func:`synthesize_file`.

    Args:
        device: ``auto`` (CUDA if torch sees it, else the CPU), ``cpu``, ``cuda``, ``cuda:1``...
    """
    torch_device = device if isinstance(device, torch.device) else _resolve_device(device)
    pipeline, meta = load_pipeline(checkpoint, torch_device)
    return LoadedPipeline(pipeline, meta, torch_device)


@dataclass(frozen=True)
class SynthesisResult:
    output: Path
    sidecar: Path
    prompt: str
    warnings: list[str] = field(default_factory=list)


def _resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: torch sees no CUDA device (use --device cpu)")
    return torch.device(requested)


DEFAULT_PATCH_SETTINGS = {"patch_size": 32, "overlap": 8}


def patch_settings(meta: Mapping[str, Any], patch_size: int | None, overlap: int | None):
    """``(patch_size, overlap)``: the given values, else the checkpoint's recommendation (its
    ``extra["patch_settings"]``), else 32 and 8."""
    recommended = {**DEFAULT_PATCH_SETTINGS, **meta["extra"].get("patch_settings", {})}
    return (
        recommended["patch_size"] if patch_size is None else patch_size,
        recommended["overlap"] if overlap is None else overlap,
    )


def check_patch_settings(*, patch_size: int, overlap: int, batch: int) -> None:
    """Refuse patch settings that whole-volume synthesis cannot use (before any work is done).

    Raises:
        ConfigError: naming the flag, what it must be and what it was.
    """
    if patch_size < 1:
        raise ConfigError(f"--patch-size must be at least 1, got {patch_size}")
    if not 0 <= overlap < patch_size:
        raise ConfigError(f"--overlap must be in [0, patch size {patch_size}), got {overlap}")
    if batch < 1:
        raise ConfigError(f"--batch must be at least 1, got {batch}")


def synthesize_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    target: ImagingMetadata,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    patch_size: int | None = None,
    overlap: int | None = None,
    batch: int = 4,
    precision: str = "auto",
    nan_to_zero: bool = False,
    progress: Callable[[Iterator], Iterator] | None = None,
    model: LoadedPipeline | None = None,
    sidecar_fields: Mapping[str, Any] | None = None,
) -> SynthesisResult:
    """Synthesize ``target`` (its voxel size included) from the image at ``source``.

    The image and its JSON sidecar (same name, ``.json``) are written atomically.

    Args:
        checkpoint, device: the model to load, unless ``model`` is given.
        patch_size, overlap: patch side and overlap in input voxels (default: the checkpoint's
            recommendation, else 32 and 8).
        model: an already loaded pipeline (:func:`open_pipeline`), for many files in a row;
            ``checkpoint`` and ``device`` must then be left out.
        sidecar_fields: further sidecar entries (e.g. BIDS derivatives' ``Sources``).
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 on GPUs, fp32 on the CPU,
            where fp32 reproduces the official code to 2e-6 and bf16 is faster on CPUs with
            bf16 instructions (speed and deviation: ``benchmarks/bench_synthesize.py``).
    """
    output = Path(output)
    if not output.name.lower().endswith((".nii", ".nii.gz")):
        raise ImageError(f"{output}: output must end in .nii or .nii.gz")
    if target.voxel_size is None or target.modality is None:
        raise ConfigError("the target needs a modality and a voxel size")
    if model is not None and (checkpoint is not None or device != "auto"):
        raise ValueError("give either a loaded model or a checkpoint and device, not both")
    meta = model.meta if model is not None else read_pipeline_metadata(checkpoint)
    patch_size, overlap = patch_settings(meta, patch_size, overlap)
    check_patch_settings(patch_size=patch_size, overlap=overlap, batch=batch)
    volume = load_nifti(source, nan_to_zero=nan_to_zero)
    model = model or open_pipeline(checkpoint, device=device)
    pipeline, meta, torch_device = model.pipeline, model.meta, model.device
    prompt = format_prompt(target)
    warnings = coverage_warnings(target, meta["extra"].get("coverage", {}))
    predict = pipeline.predictor(prompt)
    if precision not in ("auto", "fp32", "bf16"):
        raise ConfigError(f"--precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" or (precision == "auto" and torch_device.type == "cuda"):
        plain = predict

        def predict(*args):
            with torch.autocast(torch_device.type, dtype=torch.bfloat16):
                return plain(*args)

    normalisation = meta["extra"].get("input_normalisation", "tumsyn")
    result = synthesize_volume(
        predict,
        volume,
        target.voxel_size,
        patch_size=patch_size,
        overlap=overlap,
        batch=batch,
        device=torch_device,
        normalise=NORMALISERS[normalisation],
        progress=progress,
    )
    save_nifti(output, result.data, result.affine)
    from tumsyn import __version__

    sidecar = output.with_name(output.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    content = {
        **sidecar_from_metadata(target),
        "SynthesisPrompt": prompt,
        "SynthesisSource": str(Path(source).name),
        "SynthesisModel": model.name,
        "GeneratedBy": [{"Name": "tumsyn", "Version": __version__}],
        "SynthesisWarnings": warnings,
        **(sidecar_fields or {}),
    }
    with atomic_output(sidecar) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return SynthesisResult(output, sidecar, prompt, warnings)
