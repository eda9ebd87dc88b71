"""Imaging metadata: the typed record, the prompt text, and the readers that fill them."""

from tumsyn.metadata.bids import (
    bids_image_name,
    find_participant,
    metadata_from_sidecar,
    modality_from_bids_name,
    modality_from_file_name,
    read_participants,
    sidecar_from_metadata,
    sidecar_path,
)
from tumsyn.metadata.dicom import metadata_from_dicom
from tumsyn.metadata.modalities import MODALITIES, canonical_modality
from tumsyn.metadata.prompt import (
    format_prompt,
    parse_prompt,
    prompt_voxel_size,
    prompt_without_subject,
)
from tumsyn.metadata.prompt_files import read_prompt_file, write_prompt_file
from tumsyn.metadata.protocols import Protocol, default_protocol, load_protocols
from tumsyn.metadata.record import ImagingMetadata

__all__ = [
    "MODALITIES",
    "ImagingMetadata",
    "Protocol",
    "bids_image_name",
    "canonical_modality",
    "default_protocol",
    "find_participant",
    "format_prompt",
    "load_protocols",
    "metadata_from_dicom",
    "metadata_from_sidecar",
    "modality_from_bids_name",
    "modality_from_file_name",
    "parse_prompt",
    "prompt_voxel_size",
    "prompt_without_subject",
    "read_participants",
    "read_prompt_file",
    "sidecar_from_metadata",
    "sidecar_path",
    "write_prompt_file",
]
