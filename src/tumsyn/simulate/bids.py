"""Writing a simulated cohort as a BIDS data set (with tissue maps as derivatives).

Subject ``i`` of a data set made with seed ``s`` depends on ``(s, i)`` only, through
``numpy.random.SeedSequence``: the same seed gives the same bytes whatever the number of workers,
and :func:`cohort_subject` rebuilds any subject later (for the exact truth of any protocol).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from tumsyn import __version__
from tumsyn.errors import MetadataError, TumsynError
from tumsyn.io import atomic_output, save_json, save_nifti
from tumsyn.metadata import Protocol, bids_image_name, sidecar_from_metadata, sidecar_path
from tumsyn.simulate.anatomy import Anatomy, build_anatomy, draw_anatomy
from tumsyn.simulate.render import draw_scan_settings, scan
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.tissues import TISSUES, tissue_properties

__all__ = [
    "CohortSettings",
    "check_protocols",
    "cohort_subject",
    "save_subject_montage",
    "simulate_dataset",
]

DERIVATIVES = Path("derivatives") / "tumsyn"


@dataclass(frozen=True)
class CohortSettings:
    """How a cohort is drawn and scanned (everything but the protocols)."""

    subjects: int
    seed: int = 0
    enhancing_fraction: float = 0.3  # share of subjects with an enhancing lesion
    snr: tuple[float, float] = (25.0, 60.0)  # per image, drawn uniformly
    bias: float = 0.12  # standard deviation of the bias-field polynomial coefficients
    oblique_deg: float = 0.0  # largest rotation of an image grid about each axis

    def __post_init__(self) -> None:
        if self.subjects < 1:
            raise MetadataError(f"the number of subjects must be at least 1, got {self.subjects}")
        if not 0.0 <= self.enhancing_fraction <= 1.0:
            raise MetadataError(
                f"the enhancing-lesion fraction must be in [0, 1], got {self.enhancing_fraction}"
            )
        low, high = self.snr
        if not 0 < low <= high:
            raise MetadataError(
                f"SNR range must be two positive numbers, low first, got {self.snr}"
            )
        if not 0.0 <= self.oblique_deg <= 45.0:
            raise MetadataError(f"oblique angle must be 0-45 degrees, got {self.oblique_deg}")


def _subject_generator(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def _subject_label(index: int, count: int) -> str:
    return f"{index:0{max(3, len(str(count)))}d}"


def cohort_subject(settings: CohortSettings, index: int) -> Anatomy:
    """Subject ``index`` (1-based) of a cohort: the same anatomy ``simulate_dataset`` wrote."""
    rng = _subject_generator(settings.seed, index)
    anatomy_seed = int(rng.integers(2**31))
    enhancing = bool(rng.uniform() < settings.enhancing_fraction)
    return build_anatomy(draw_anatomy(anatomy_seed, enhancing=enhancing))


def check_protocols(protocols: Sequence[Protocol]) -> None:
    """Refuse, before any work, protocols the simulator cannot honour (with the reason)."""
    for protocol in protocols:
        metadata = protocol.metadata
        try:
            if metadata.voxel_size is None:
                raise MetadataError("the protocol needs a voxel size to be simulated")
            signal(tissue_properties(metadata.field_strength), metadata)
        except MetadataError as error:
            raise MetadataError(
                f"protocol {protocol.name!r} ({metadata.modality}): {error}"
            ) from None


def _simulate_subject(job: tuple[Path, CohortSettings, tuple[Protocol, ...], int]) -> dict:
    """Write one subject's images, sidecars and tissue maps; return its participants row."""
    root, settings, protocols, index = job
    label = _subject_label(index, settings.subjects)
    anatomy = cohort_subject(settings, index)
    scan_rng = np.random.default_rng(np.random.SeedSequence([settings.seed, index, 1]))
    anat = root / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    parameters = anatomy.parameters
    scans = {}
    for protocol in protocols:
        metadata = protocol.metadata
        scan_settings = draw_scan_settings(
            scan_rng, snr=settings.snr, bias=settings.bias, oblique_deg=settings.oblique_deg
        )
        data, affine = scan(anatomy, metadata, scan_settings)
        name = bids_image_name(label, str(metadata.modality), acq=protocol.name)
        save_nifti(anat / name, data, affine)
        save_json(sidecar_path(anat / name), sidecar_from_metadata(metadata))
        scans[name] = asdict(scan_settings)
    derivatives = root / DERIVATIVES / f"sub-{label}" / "anat"
    derivatives.mkdir(parents=True, exist_ok=True)
    for tissue in TISSUES:
        path = derivatives / f"sub-{label}_label-{tissue}_probseg.nii.gz"
        save_nifti(path, anatomy.fraction(tissue), anatomy.grid.affine, dtype=np.uint8)
    save_json(
        derivatives / f"sub-{label}_simulation.json",
        {
            "cohort": asdict(settings),
            "index": index,
            "anatomy": parameters.summary(),
            "scans": scans,
        },
    )
    return {"participant_id": f"sub-{label}", "age": parameters.age, "sex": parameters.sex}


def _dataset_files(root: Path, settings: CohortSettings, rows: list[dict]) -> None:
    generated_by = [{"Name": "tumsyn", "Version": __version__, "Description": "tumsyn simulate"}]
    save_json(
        root / "dataset_description.json",
        {
            "Name": f"tumsyn simulated cohort (seed {settings.seed}, {settings.subjects} subjects)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0; anatomy derived from the ICBM 2009a template (see README)",
            "Authors": ["tumsyn simulator"],
            "GeneratedBy": generated_by,
        },
    )
    save_json(
        root / DERIVATIVES / "dataset_description.json",
        {
            "Name": "tumsyn simulation truth: tissue fractions and simulation parameters",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": generated_by,
        },
    )
    readme = (
        "Simulated brain MRI made by `tumsyn simulate` (physics-based: MNI152 2009a tissue maps,\n"
        "random deformation, ageing and lesions, MR signal equations, point-spread function,\n"
        "bias field and Rician noise). No real subject's data is in this data set.\n\n"
        "derivatives/tumsyn holds each subject's exact tissue fractions (label-*_probseg) and\n"
        "the parameters of its anatomy and scans. The ICBM 2009a template is copyright (C)\n"
        "1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological\n"
        "Institute, McGill University; used with permission.\n"
    )
    with atomic_output(root / "README") as temporary:
        temporary.write_text(readme, encoding="utf-8")
    save_json(
        root / "participants.json",
        {
            "age": {"Description": "age of the virtual subject", "Units": "year"},
            "sex": {
                "Description": "sex of the virtual subject",
                "Levels": {"F": "female", "M": "male"},
            },
        },
    )
    lines = ["participant_id\tage\tsex"]
    lines += [f"{r['participant_id']}\t{r['age']}\t{r['sex']}" for r in rows]
    with atomic_output(root / "participants.tsv") as temporary:
        temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _start_worker() -> None:
    import torch

    torch.set_num_threads(1)


def simulate_dataset(
    root: str | os.PathLike,
    settings: CohortSettings,
    protocols: Sequence[Protocol],
    *,
    voxel_size: Sequence[float] | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Simulate ``settings.subjects`` subjects, each scanned with every protocol, as BIDS.

    Args:
        voxel_size: if given, replaces every protocol's voxel size.
        workers: processes; each subject is one job.
    """
    from tqdm import tqdm

    if workers < 1:
        raise MetadataError(f"workers must be at least 1, got {workers}")
    if voxel_size is not None:
        voxel = tuple(float(v) for v in voxel_size)
        protocols = [replace(p, metadata=p.metadata.replace(voxel_size=voxel)) for p in protocols]
    check_protocols(protocols)
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise TumsynError(f"{root}: the output folder exists and is not empty; choose a new one")
    root.mkdir(parents=True, exist_ok=True)
    jobs = [(root, settings, tuple(protocols), i) for i in range(1, settings.subjects + 1)]
    bar = tqdm(total=len(jobs), unit="subject", desc="simulate", disable=not progress)
    if workers == 1:
        rows = []
        for job in jobs:
            rows.append(_simulate_subject(job))
            bar.update()
    else:
        # spawn, not fork: a forked child of a process that already ran torch can deadlock.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
            rows = []
            for row in pool.map(_simulate_subject, jobs):
                rows.append(row)
                bar.update()
    bar.close()
    _dataset_files(root, settings, rows)
    return root


def save_subject_montage(root: str | os.PathLike, path: str | os.PathLike) -> Path:
    """A PNG montage of every image of the first subject of a BIDS folder, by modality."""
    from tumsyn.figures import save_montage
    from tumsyn.io import load_nifti
    from tumsyn.metadata import MODALITIES, modality_from_bids_name

    subject = min(Path(root).glob("sub-*"), default=None)
    if subject is None:
        raise TumsynError(f"{root}: no sub-* folder to show")
    images = []
    for file in sorted((subject / "anat").glob("*.nii.gz")):
        modality = modality_from_bids_name(file.name)
        if modality is not None:
            volume = load_nifti(file)
            order = MODALITIES.index(modality)
            images.append((order, file.name, (modality, volume.data, volume.affine)))
    if not images:
        raise TumsynError(f"{subject}: no images to show")
    shown = [image for *_, image in sorted(images, key=lambda item: item[:2])]
    return save_montage(path, shown, title=f"{subject.name} (tumsyn simulate)")
