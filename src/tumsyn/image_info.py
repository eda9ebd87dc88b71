"""What ``tumsyn info`` says about an image: geometry, intensities, and the prompt it implies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tumsyn.infer.loading import pipeline_networks, read_pipeline_metadata
from tumsyn.infer.modality_guess import guess_input_modality
from tumsyn.infer.target import checked_prompt
from tumsyn.io import load_nifti
from tumsyn.metadata import (
    ImagingMetadata,
    find_participant,
    metadata_from_sidecar,
    modality_from_file_name,
    prompt_voxel_size,
    sidecar_path,
)
from tumsyn.models.routed import reads_by_guess

__all__ = ["ImageSummary", "summarise_image"]


@dataclass(frozen=True)
class ImageSummary:
    """Facts about one 3D image and the metadata its BIDS name, sidecar and participant give."""

    path: Path
    shape: tuple[int, ...]
    voxel_size: tuple[float, float, float]
    orientation: str
    minimum: float
    maximum: float
    nonzero: int
    percentiles: tuple[float, float]  # 0.5th and 99.5th of the non-zero voxels
    sidecar: Path | None
    participant_found: bool
    metadata: ImagingMetadata
    input_modality: str  # how the default model reads it: named, or guessed from intensities

    def rows(self) -> list[tuple[str, str]]:
        """``(name, value)`` lines for a terminal."""
        low, high = self.percentiles
        return [
            ("file", str(self.path)),
            ("shape", " x ".join(map(str, self.shape))),
            ("voxel size", " x ".join(f"{v:.3g}" for v in self.voxel_size) + " mm"),
            ("orientation", self.orientation),
            ("intensity", f"min {self.minimum:.4g}, max {self.maximum:.4g}"),
            ("non-zero", f"{self.nonzero} voxels, 0.5-99.5 percentile {low:.4g}-{high:.4g}"),
            ("sidecar", str(self.sidecar) if self.sidecar else "none beside the image"),
            ("participant", "found in participants.tsv" if self.participant_found else "not found"),
            ("input modality", self.input_modality),
            ("prompt", checked_prompt(self.metadata)),
        ]


def summarise_image(
    path: str | os.PathLike,
    *,
    participants: str | os.PathLike | None = None,
    nan_to_zero: bool = False,
) -> ImageSummary:
    """Read an image (refused as :func:`tumsyn.io.load_nifti` refuses) and summarise it.

    The metadata comes from the BIDS sidecar beside the image (with age and sex from
    ``participants``, found from the BIDS root by default), else from the BIDS name alone; the
    voxel size always from the header.
    """
    path = Path(path)
    volume = load_nifti(path, nan_to_zero=nan_to_zero)
    voxel_size = prompt_voxel_size(volume.voxel_size)
    foreground = volume.data[volume.data != 0]
    low, high = np.percentile(foreground, [0.5, 99.5])
    sidecar = sidecar_path(path)
    participant = find_participant(path, participants)
    if sidecar.is_file():
        metadata = metadata_from_sidecar(sidecar, participant=participant, voxel_size=voxel_size)
    else:
        metadata = ImagingMetadata(
            modality=modality_from_file_name(path.name), voxel_size=voxel_size
        )
    return ImageSummary(
        input_modality=_input_modality(metadata, volume.data, volume.voxel_size),
        path=path,
        shape=tuple(volume.data.shape),
        voxel_size=volume.voxel_size,
        orientation=volume.orientation,
        minimum=float(volume.data.min()),
        maximum=float(volume.data.max()),
        nonzero=int(foreground.size),
        percentiles=(float(low), float(high)),
        sidecar=sidecar if sidecar.is_file() else None,
        participant_found=participant is not None,
        metadata=metadata,
    )


def _input_modality(
    metadata: ImagingMetadata, data: np.ndarray, voxel_size: tuple[float, float, float]
) -> str:
    """How the default model reads the image: with the network of the modality its name or
    sidecar gives; where none is given, or the model has no network for it (a T2*w), with the
    network its intensities point to (:mod:`tumsyn.infer.modality_guess`), as
    :meth:`tumsyn.Synthesizer.modality_guess` does."""
    named = metadata.modality
    networks, fallback = pipeline_networks(read_pipeline_metadata(None))
    if fallback is None:
        return f"{named or 'not named'} (the default model reads every input alike)"
    if not reads_by_guess(networks, named):
        return f"{named} (from the file name or sidecar)"
    guess = guess_input_modality(data, voxel_size)
    network = f"{guess.modality} network" if guess.modality else f"fallback network, {fallback}"
    how = f"the default model reads it with its {network} ({guess.reason})"
    if named is None:
        return f"not named; {how}"
    return f"{named} (from the file name or sidecar), which has no network of its own; {how}"
