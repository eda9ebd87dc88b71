"""The training data pipeline: data set indexes, pairs, cached volumes, and the two data sets.

Example:
    >>> from tumsyn.data import load_index, paired_records, SynthesisPatches, VolumeCache
    >>> records = load_index("bids/")  # doctest: +SKIP
    >>> ids = {p: i for i, p in enumerate(sorted({r.prompt for r in records}))}  # doctest: +SKIP
    >>> pairs = paired_records(records)  # doctest: +SKIP
    >>> patches = SynthesisPatches(pairs, VolumeCache("cache/"), ids)  # doctest: +SKIP
"""

from tumsyn.data.contrastive import DistinctPromptBatchSampler, WholeVolumes
from tumsyn.data.index import (
    ImageRecord,
    index_bids,
    index_manifest,
    index_prompt_files,
    load_index,
    split_subjects,
)
from tumsyn.data.pairs import paired_records
from tumsyn.data.synthesis import PatchParameters, SynthesisPatches
from tumsyn.data.volumes import VolumeCache, normalise_percentiles

__all__ = [
    "DistinctPromptBatchSampler",
    "ImageRecord",
    "PatchParameters",
    "SynthesisPatches",
    "VolumeCache",
    "WholeVolumes",
    "index_bids",
    "index_manifest",
    "index_prompt_files",
    "load_index",
    "normalise_percentiles",
    "paired_records",
    "split_subjects",
]
