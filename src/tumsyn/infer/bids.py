"""``tumsyn synthesize-bids``: one target contrast for every source image of a BIDS data set.

Sources are the ``sub-*/[ses-*/]anat/*_<suffix>.nii[.gz]`` images of the data set (default
``T1w``; a modality name such as ``T1w``, ``T1CE`` or ``PD`` selects by modality, so that ``T1w``
leaves out contrast-enhanced ``ce-*_T1w`` images; any other word selects by BIDS suffix). The
outputs form a BIDS-derivatives data set::

    OUT/dataset_description.json
    OUT/sub-01/ses-1/anat/sub-01_ses-1_acq-mprage_desc-tumsyn_FLAIR.nii.gz   (+ .json sidecar)

An output keeps its source's entities (``sub``, ``ses``, ``acq``, ``run``...), so every source has
its own output, except ``ce`` and ``rec``, which describe the source's contrast: the target's own
(``ce-gadolinium`` for T1CE, ``rec-swi`` for SWI) take their place. ``desc-tumsyn`` (the
derivatives entity for processed data) marks the image as synthesized. The name does not say
which source suffix an output came from: use one derivatives folder per source and target pair.
Each sidecar holds the target's metadata, the prompt the model was given, the asked values it
leaves out of that prompt (``SynthesisPromptLeftOut``: ``tumsyn-v2`` ignores the participant's
age and sex), the model and the source as a BIDS URI
(``"Sources": ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]``, ``raw`` being a ``DatasetLinks``
entry of ``dataset_description.json``).

Under ``torchrun --nproc_per_node=K``, rank ``r`` takes the sources ``i`` with ``i % K == r`` of the
sorted list (no process group is needed), on GPU ``LOCAL_RANK`` when the device is CUDA; only rank
0 writes ``dataset_description.json``. Existing outputs are skipped unless ``overwrite``; every
file is written atomically, so an interrupted run is resumed by running it again (with or without
``overwrite``: the temporaries a killed run left are cleared, beside skipped outputs too).
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tumsyn.distributed import World, environment_world
from tumsyn.errors import ConfigError, InputFileError, MetadataError, TumsynError
from tumsyn.infer.files import refuse_raw_bids_output, synthesize_file
from tumsyn.infer.loading import model_name, read_pipeline_metadata
from tumsyn.infer.options import SynthesisOptions
from tumsyn.infer.synthesizer import Synthesizer, TargetLike
from tumsyn.infer.target import resolve_target
from tumsyn.io import remove_stale_temporaries, save_json
from tumsyn.metadata import bids_image_name, canonical_modality, modality_from_bids_name
from tumsyn.metadata.bids import anat_images, bids_entities, sidecar_path

__all__ = [
    "DESCRIPTION_LABEL",
    "BidsJob",
    "BidsSummary",
    "dataset_description",
    "derivative_name",
    "find_sources",
    "plan_jobs",
    "synthesize_bids",
]

DESCRIPTION_LABEL = "tumsyn"
BIDS_VERSION = "1.9.0"
# Entities of the source that describe its contrast, not the synthesized one's.
_SOURCE_CONTRAST_ENTITIES = ("ce", "rec", "desc")
# The source data set's name in BIDS URIs (dataset_description's DatasetLinks).
_SOURCE_LINK = "raw"


@dataclass(frozen=True)
class BidsJob:
    """One source image and the output made from it.

    Args:
        conflict: another source (earlier in sorted order) that would write the same output; this
            job is then reported as failed instead of overwriting it.
    """

    source: Path
    output: Path
    conflict: Path | None = None

    @property
    def sidecar(self) -> Path:
        return sidecar_path(self.output)


@dataclass
class BidsSummary:
    """What one process did with its share of the jobs (all of them in a world of one)."""

    jobs: int
    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    warnings: Counter = field(default_factory=Counter)  # coverage warning -> number of outputs
    left_out: Counter = field(default_factory=Counter)  # field the model ignores -> outputs
    model: str = ""
    rank: int = 0
    world_size: int = 1


def _source_matcher(source: str) -> Callable[[str], bool]:
    """Whether a file name is a source: by modality if ``source`` names one, else by suffix."""
    try:
        modality = canonical_modality(source)
    except MetadataError:
        return lambda name: bids_entities(name)[1] == source
    return lambda name: modality_from_bids_name(name) == modality


def find_sources(
    root: str | os.PathLike, *, source: str = "T1w", exclude: str | os.PathLike | None = None
) -> list[Path]:
    """The source images of a BIDS folder, sorted: ``sub-*/[ses-*/]anat/*_<source>.nii[.gz]``.

    Args:
        source: a modality (``T1w``, ``T1CE``, ``PD``...: matched as :func:`modality_from_bids_name`
            reads names) or any other BIDS suffix (matched exactly).
        exclude: a folder whose images are never sources (the derivatives being written).

    Raises:
        InputFileError: ``root`` is not a folder, or holds no such image.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root}: no such BIDS folder")
    matches = _source_matcher(source)
    excluded = Path(exclude).resolve() if exclude is not None else None
    sources = [
        path
        for path in anat_images(root)
        if "sub" in bids_entities(path.name)[0]
        and matches(path.name)
        and not (excluded is not None and path.resolve().is_relative_to(excluded))
    ]
    if not sources:
        raise InputFileError(
            f"{root}: no sub-*/[ses-*/]anat/*_{source}.nii[.gz] images (--source picks another "
            "suffix)"
        )
    return sources


def derivative_name(source_name: str, modality: str) -> str:
    """The output name for a source image: its entities, ``desc-tumsyn``, the target's suffix.

    Example:
        >>> derivative_name("sub-01_ses-2_acq-mprage_run-1_T1w.nii.gz", "FLAIR")
        'sub-01_ses-2_acq-mprage_run-1_desc-tumsyn_FLAIR.nii.gz'
        >>> derivative_name("sub-01_ce-gadolinium_T1w.nii", "SWI")
        'sub-01_rec-swi_desc-tumsyn_T2starw.nii.gz'
    """
    entities, _ = bids_entities(source_name)
    kept = {k: v for k, v in entities.items() if k not in _SOURCE_CONTRAST_ENTITIES}
    subject, session = kept.pop("sub"), kept.pop("ses", None)
    kept["desc"] = DESCRIPTION_LABEL
    return bids_image_name(subject, modality, session=session, entities=kept)


def plan_jobs(
    root: str | os.PathLike, out: str | os.PathLike, modality: str, *, source: str = "T1w"
) -> list[BidsJob]:
    """One job per source image of ``root`` (sorted), its output in the same folders of ``out``.

    Raises:
        ConfigError: ``out`` is ``root`` itself or lies in its (or another raw data set's)
            ``sub-*`` folders: derivatives never go among the raw data.
        InputFileError: as :func:`find_sources`.
    """
    root, out = Path(root), Path(out)
    if out.resolve() == root.resolve():
        raise ConfigError(
            f"{out}: the output folder is the BIDS folder itself; give a derivatives folder, "
            f"e.g. {root / 'derivatives' / 'tumsyn-synthesis'}"
        )
    refuse_raw_bids_output(out / "dataset_description.json")
    jobs = []
    first: dict[Path, Path] = {}
    for path in find_sources(root, source=source, exclude=out):
        output = out / path.parent.relative_to(root) / derivative_name(path.name, modality)
        jobs.append(BidsJob(path, output, conflict=first.get(output)))
        first.setdefault(output, path)
    return jobs


def dataset_description(
    root: str | os.PathLike, *, modality: str, source: str, model: str
) -> dict[str, Any]:
    """The ``dataset_description.json`` of the derivatives made from the data set at ``root``."""
    from tumsyn import __version__

    root = Path(root)
    raw: dict[str, Any] = {}
    try:
        loaded = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))
        raw = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):
        pass
    location = root.resolve().as_uri()
    origin: dict[str, Any] = {"URL": location}
    if raw.get("DatasetDOI"):
        origin["DOI"] = raw["DatasetDOI"]
    name = f"tumsyn synthesis: {modality} from {source}"
    if raw.get("Name"):
        name += f" ({raw['Name']})"
    return {
        "Name": name,
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "tumsyn",
                "Version": __version__,
                "Description": (
                    f"tumsyn synthesize-bids: {modality} images (desc-{DESCRIPTION_LABEL}) "
                    f"synthesized from each {source} image with the {model} model"
                ),
            }
        ],
        "SourceDatasets": [origin],
        "DatasetLinks": {_SOURCE_LINK: location},
    }


def _bids_uri(root: Path, path: Path) -> str:
    """A source file as the BIDS URI that sidecars' ``Sources`` hold (``bids:raw:sub-01/...``)."""
    return f"bids:{_SOURCE_LINK}:{path.relative_to(root).as_posix()}"


def synthesize_bids(
    root: str | os.PathLike,
    out: str | os.PathLike,
    target: TargetLike = None,
    *,
    fields: Mapping[str, Any] | None = None,
    source: str = "T1w",
    checkpoint: str | os.PathLike | None = None,
    options: SynthesisOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
    world: World | None = None,
) -> BidsSummary:
    """Synthesize the target for every source image of a BIDS folder into a derivatives folder.

    The target is built per image as :class:`Synthesizer` builds it (:func:`resolve_target`: a
    modality's default protocol with age and sex from ``participants.tsv``, or a prompt; then
    ``fields``; the voxel size from the image). The model is loaded once, and only if some output
    is missing. An image that fails (unreadable, bad metadata) is reported in the summary and the
    others go on.

    Args:
        root, out: the BIDS folder and the derivatives folder (made if missing).
        target, fields: as for :meth:`Synthesizer.__call__`.
        source: which images to start from (see :func:`find_sources`).
        options: patch and run settings (validated when made; the device per process comes from
            ``world``).
        overwrite: redo outputs (and ``dataset_description.json``) that exist already.
        progress: a tqdm bar over this process's images.
        world: this process's rank and device (default: from torchrun's environment).

    Raises:
        TumsynError: a bad request (no or unknown modality, inconsistent values), a missing or
            wrong checkpoint, no source image, an output folder among the raw data. Raised
            before any output is written.
    """
    from tqdm import tqdm

    root, out = Path(root), Path(out)
    options = options or SynthesisOptions()
    meta = read_pipeline_metadata(checkpoint)
    modality = str(resolve_target(target, fields=fields).modality)
    world = world or environment_world(options.device)
    jobs = plan_jobs(root, out, modality, source=source)
    out.mkdir(parents=True, exist_ok=True)
    if world.is_main:
        description = dataset_description(
            root, modality=modality, source=source, model=model_name(meta)
        )
        _write_description(out / "dataset_description.json", description, overwrite=overwrite)

    mine = jobs[world.rank :: world.size]
    summary = BidsSummary(
        jobs=len(mine), rank=world.rank, world_size=world.size, model=model_name(meta)
    )
    device_options = options.replace(device=str(world.device))
    # Loaded at the first output to make, so a rerun with everything done loads nothing.
    load = functools.cache(lambda: Synthesizer.from_checkpoint(checkpoint, options=device_options))
    bar = tqdm(
        mine,
        unit="image",
        desc="synthesize" if world.size == 1 else f"synthesize rank {world.rank}",
        position=world.rank,
        disable=not progress,
    )
    for job in bar:
        _run_job(job, summary, load, root=root, target=target, fields=fields, overwrite=overwrite)
        bar.set_postfix_str(
            f"written {len(summary.written)}, skipped {len(summary.skipped)}, "
            f"failed {len(summary.failed)}",
            refresh=False,
        )
    bar.close()
    return summary


def _write_description(path: Path, content: dict[str, Any], *, overwrite: bool) -> None:
    """Write ``dataset_description.json`` unless it exists (and ``overwrite`` is off)."""
    if overwrite or not path.exists():
        save_json(path, content)
    else:
        remove_stale_temporaries(path)  # a run killed while rewriting it left one


def _run_job(
    job: BidsJob,
    summary: BidsSummary,
    load: Callable[[], Synthesizer],
    *,
    root: Path,
    target: TargetLike,
    fields: Mapping[str, Any] | None,
    overwrite: bool,
) -> None:
    """Make, skip or fail one job, recording which in ``summary``.

    Only a user error or an OS error of this image fails it; a model that cannot be loaded
    (``load``) stops the batch.
    """
    if job.conflict is not None:
        message = f"{job.source}: same output as {job.conflict.name}: {job.output}"
        summary.failed.append((job.source, message))
        return
    if job.output.exists() and job.sidecar.exists() and not overwrite:
        # A run killed while redoing this output (--overwrite) left temporaries that only the
        # next write of the same path clears, and a skipped output gets no write.
        remove_stale_temporaries(job.output)
        remove_stale_temporaries(job.sidecar)
        summary.skipped.append(job.output)
        return
    synthesizer = load()
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        result = synthesize_file(
            synthesizer,
            job.source,
            job.output,
            target,
            sidecar_fields={"Sources": [_bids_uri(root, job.source)]},
            **dict(fields or {}),
        )
    except (TumsynError, OSError) as error:
        summary.failed.append((job.source, str(error)))
    else:
        summary.written.append(result.output)
        summary.warnings.update(result.warnings)
        summary.left_out.update(synthesizer.left_out(result.image.metadata))
