"""``tumsyn synthesize`` as a library call: load, synthesize, write image and sidecar atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch

from tumsyn.errors import ConfigError, ImageError
from tumsyn.infer.coverage import coverage_warnings
from tumsyn.infer.volume import synthesize_volume
from tumsyn.io import atomic_output, load_nifti, save_nifti
from tumsyn.metadata import ImagingMetadata, format_prompt, sidecar_from_metadata
from tumsyn.models.checkpoint import load_checkpoint, read_checkpoint_metadata
from tumsyn.models.pipeline import SynthesisPipeline

__all__ = ["BUNDLED_CHECKPOINT", "SynthesisResult", "load_pipeline", "synthesize_file"]

BUNDLED_CHECKPOINT = "tumsyn-tiny"


def bundled_checkpoint_path() -> Path:
    return Path(
        str(resources.files("tumsyn") / "checkpoints" / f"{BUNDLED_CHECKPOINT}.safetensors")
    )


def load_pipeline(
    checkpoint: str | os.PathLike | None, device: torch.device
) -> tuple[SynthesisPipeline, dict]:
    """A pipeline checkpoint (default: the bundled model) on ``device``, with its recorded facts."""
    path = (
        bundled_checkpoint_path() if checkpoint in (None, BUNDLED_CHECKPOINT) else Path(checkpoint)
    )
    meta = read_checkpoint_metadata(path)
    if meta["spec"]["name"] != "pipeline":
        raise ConfigError(
            f"{path}: a {meta['spec']['name']} checkpoint; synthesis needs a pipeline "
            "(text encoder + synthesis network), e.g. from scripts/package_release.py"
        )
    return load_checkpoint(path, device=device), {**meta, "path": str(path)}


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


def synthesize_file(
    source: str | os.PathLike,
    output: str | os.PathLike,
    target: ImagingMetadata,
    *,
    checkpoint: str | os.PathLike | None = None,
    device: str = "auto",
    patch_size: int = 32,
    overlap: int = 8,
    batch: int = 4,
    nan_to_zero: bool = False,
    progress: Callable[[Iterator], Iterator] | None = None,
) -> SynthesisResult:
    """Synthesize ``target`` (its voxel size included) from the image at ``source``."""
    output = Path(output)
    if not output.name.lower().endswith((".nii", ".nii.gz")):
        raise ImageError(f"{output}: output must end in .nii or .nii.gz")
    if target.voxel_size is None or target.modality is None:
        raise ConfigError("the target needs a modality and a voxel size")
    volume = load_nifti(source, nan_to_zero=nan_to_zero)
    torch_device = _resolve_device(device)
    pipeline, meta = load_pipeline(checkpoint, torch_device)
    prompt = format_prompt(target)
    warnings = coverage_warnings(target, meta["extra"].get("coverage", {}))
    predict = pipeline.predictor(prompt)
    if torch_device.type == "cuda":
        plain = predict

        def predict(*args):  # bf16 autocast on GPUs
            with torch.autocast("cuda", dtype=torch.bfloat16):
                return plain(*args)

    result = synthesize_volume(
        predict,
        volume,
        target.voxel_size,
        patch_size=patch_size,
        overlap=overlap,
        batch=batch,
        device=torch_device,
        progress=progress,
    )
    save_nifti(output, result.data, result.affine)
    from tumsyn import __version__

    sidecar = output.with_name(output.name.removesuffix(".gz").removesuffix(".nii") + ".json")
    content = {
        **sidecar_from_metadata(target),
        "SynthesisPrompt": prompt,
        "SynthesisSource": str(Path(source).name),
        "SynthesisModel": meta["extra"].get("name", Path(meta["path"]).name),
        "GeneratedBy": [{"Name": "tumsyn", "Version": __version__}],
        "SynthesisWarnings": warnings,
    }
    with atomic_output(sidecar) as temporary:
        temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return SynthesisResult(output, sidecar, prompt, warnings)
