"""Imaging metadata: the typed record, the prompt text, and the readers that fill them."""

from tumsyn.metadata.bids import (
    find_participant,
    metadata_from_sidecar,
    modality_from_bids_name,
    read_participants,
    sidecar_path,
)
from tumsyn.metadata.dicom import metadata_from_dicom
from tumsyn.metadata.modalities import MODALITIES, canonical_modality
from tumsyn.metadata.prompt import format_prompt, parse_prompt, prompt_voxel_size
from tumsyn.metadata.prompt_files import read_prompt_file, write_prompt_file
from tumsyn.metadata.record import ImagingMetadata

__all__ = [
    "MODALITIES",
    "ImagingMetadata",
    "canonical_modality",
    "find_participant",
    "format_prompt",
    "metadata_from_dicom",
    "metadata_from_sidecar",
    "modality_from_bids_name",
    "parse_prompt",
    "prompt_voxel_size",
    "read_participants",
    "read_prompt_file",
    "sidecar_path",
    "write_prompt_file",
]
