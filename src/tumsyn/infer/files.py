"""Synthesis from a file to a file: the image and its JSON sidecar, written safely.

Everything that can be refused is refused before the image is read: an output name that is not
NIfTI, a missing output folder, an output that is the input (same path, symlink or hard link), an
output among a raw BIDS data set's ``sub-*`` folders. The image and the sidecar are each written
atomically (a temporary file renamed into place), so they appear complete or not at all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tumsyn.errors import ConfigError, ImageError
from tumsyn.infer.synthesizer import SynthesizedImage, Synthesizer, TargetLike
from tumsyn.io import check_output_path, refuse_overwriting_inputs, save_json, save_nifti
from tumsyn.metadata import sidecar_from_metadata, sidecar_path

__all__ = ["SynthesizedFile", "check_output", "refuse_raw_bids_output", "synthesize_file"]


@dataclass(frozen=True)
class SynthesizedFile:
    """What :func:`synthesize_file` wrote, and the image it wrote."""

    output: Path
    sidecar: Path
    image: SynthesizedImage

    @property
    def prompt(self) -> str:
        return self.image.prompt

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.image.warnings


def refuse_raw_bids_output(output: str | os.PathLike) -> None:
    """Refuse a path inside the ``sub-*`` folders of a raw BIDS data set.

    The data set is the nearest folder above ``output`` with a ``dataset_description.json``; it
    is raw unless that file says ``"DatasetType": "derivative"``. Synthesized images belong in a
    derivatives folder (``derivatives/...``), never among acquired ones.

    Raises:
        ConfigError: naming the data set and where to write instead.
    """
    output = Path(output).absolute()
    for folder in output.parents:
        description = folder / "dataset_description.json"
        if not description.is_file():
            continue
        if _dataset_type(description) == "derivative":
            return
        first = output.relative_to(folder).parts[0]
        if first.startswith("sub-"):
            raise ConfigError(
                f"{output}: inside the raw BIDS data set {folder}; synthesized images go in a "
                f"derivatives folder, e.g. {folder / 'derivatives' / 'tumsyn'}"
            )
        return


def _dataset_type(description: Path) -> str:
    try:
        content = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "raw"
    return str(content.get("DatasetType", "raw")) if isinstance(content, dict) else "raw"


def check_output(output: str | os.PathLike, source: str | os.PathLike) -> Path:
    """Refuse an output that synthesis must not write (see the module's docstring).

    Raises:
        ImageError: not a ``.nii``/``.nii.gz`` name. InputFileError: no such output folder.
        ConfigError: the output (or its sidecar) is the source or its sidecar, or lies in a raw
            BIDS data set.
    """
    output = Path(output)
    if not output.name.lower().endswith((".nii", ".nii.gz")):
        raise ImageError(f"{output}: the output must end in .nii or .nii.gz")
    check_output_path(output, source, sidecar_path(source))
    refuse_overwriting_inputs(sidecar_path(output), source, sidecar_path(source))
    refuse_raw_bids_output(output)
    return output


def synthesize_file(
    synthesizer: Synthesizer,
    source: str | os.PathLike,
    output: str | os.PathLike,
    target: TargetLike = None,
    *,
    sidecar_fields: Mapping[str, Any] | None = None,
    progress: Callable[[Iterator], Iterator] | None = None,
    input_modality: str | None = None,
    **fields: Any,
) -> SynthesizedFile:
    """Synthesize from the NIfTI at ``source`` into ``output`` and its JSON sidecar.

    Args:
        target, fields, input_modality: as for :meth:`Synthesizer.__call__`.
        sidecar_fields: further sidecar entries (e.g. BIDS derivatives' ``Sources``).

    Returns:
        The paths written and the image (with its prompt and warnings).
    """
    output = check_output(output, source)
    image = synthesizer(source, target, progress=progress, input_modality=input_modality, **fields)
    save_nifti(output, image)
    content = {
        **sidecar_from_metadata(image.metadata),
        "SynthesisPrompt": image.prompt,
        "SynthesisPromptLeftOut": _left_out_values(synthesizer, image.metadata),
        "SynthesisSource": Path(source).name,
        "SynthesisModel": synthesizer.name,
        "GeneratedBy": [{"Name": "tumsyn", "Version": _version()}],
        "SynthesisWarnings": list(image.warnings),
        **(sidecar_fields or {}),
    }
    sidecar = save_json(sidecar_path(output), content)
    return SynthesizedFile(output, sidecar, image)


def _left_out_values(synthesizer: Synthesizer, metadata) -> dict[str, Any]:
    """The asked-for values that the model leaves out of its prompt (e.g. the participant's age
    and sex for ``tumsyn-v2``), so that the sidecar still records what was asked."""
    return {name: getattr(metadata, name) for name in synthesizer.left_out(metadata)}


def _version() -> str:
    from tumsyn import __version__

    return __version__
