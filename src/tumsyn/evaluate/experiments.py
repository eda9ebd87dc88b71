"""The paper's experiments on a BIDS data set: cases, methods, per-case scores and summaries.

A *case* is one target image of a subject and a source image of the same subject in the task's
source modality (the subject's sources are taken in turn, so every source protocol is used). A
*method* maps a case's source to a prediction of its target: a synthesis model (any pipeline
checkpoint, asked for the target's own prompt, read from its sidecar) or a baseline that needs no
training. Scores are the paper's PSNR and SSIM, MAE, and the GM/WM and CSF/WM contrast errors
where the data set has tissue maps (the simulator writes them under ``derivatives/tumsyn``),
all inside the brain mask (tissue maps summed > 0.5, else the truth's non-zero voxels).

Nothing here depends on the data being simulated: a lab runs the same functions on its own
co-registered BIDS data set (see the README's "Evaluation on your own data").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import nibabel as nib
import numpy as np

from tumsyn.data import ImageRecord, index_bids
from tumsyn.evaluate.derivatives import TISSUE_LABELS, find_subject_maps
from tumsyn.evaluate.metrics import contrast_errors, eroded, mae, psnr, ssim
from tumsyn.evaluate.report import mean_and_interval
from tumsyn.io import Grid, atomic_output
from tumsyn.simulate.tissues import LESIONS

__all__ = [
    "BASELINES",
    "Case",
    "CaseData",
    "evaluate_cases",
    "load_case",
    "model_method",
    "score",
    "summarise",
    "task_cases",
    "task_name",
]

Task = tuple[str, str]
TISSUES = TISSUE_LABELS
#: Least lesion volume (in voxels' worth of fractions) in a case for its lesion/WM error.
MIN_LESION_VOXELS = 20.0


def task_name(task: Task) -> str:
    """``"T1w->T2w"``: how tables and model names spell a task."""
    return f"{task[0]}->{task[1]}"


@dataclass(frozen=True)
class Case:
    """One evaluation case: predict ``target`` (an acquired image) from ``source``."""

    dataset: Path
    task: Task
    source: ImageRecord
    target: ImageRecord

    @property
    def name(self) -> str:
        """A file-name-safe identifier: the target image's name and the source protocol."""
        stem = self.target.path.name.split(".nii")[0]
        return f"{stem}__from-{self.source.path.name.split('.nii')[0]}"


@dataclass
class CaseData:
    """A case's images, cropped to the evaluated slab."""

    case: Case
    source: nib.Nifti1Image
    truth: np.ndarray
    mask: np.ndarray
    tissues: dict[str, np.ndarray] | None
    lesions: np.ndarray | None = None  # where there is enough lesion to measure


def task_cases(dataset: str | os.PathLike, tasks: Sequence[Task], max_cases: int = 0) -> list[Case]:
    """Every case of ``tasks`` in a BIDS data set, task by task (at most ``max_cases`` each,
    taken round-robin over subjects so a limit still spans subjects)."""
    dataset = Path(dataset)
    records: dict[tuple[str, str], list[ImageRecord]] = {}
    for record in index_bids(dataset):
        records.setdefault((record.subject, str(record.metadata.modality)), []).append(record)
    subjects = sorted({subject for subject, _ in records})
    cases = []
    for task in tasks:
        per_subject = []
        for subject in subjects:
            sources = records.get((subject, task[0]), [])
            targets = records.get((subject, task[1]), [])
            cases_of_subject = []
            for index, target in enumerate(targets):
                others = [s for s in sources if s.path != target.path]  # same-modality tasks
                if others:
                    cases_of_subject.append(
                        Case(dataset, task, others[index % len(others)], target)
                    )
            per_subject.append(cases_of_subject)
        ordered = [c for row in _round_robin(per_subject) for c in row]
        cases.extend(ordered[:max_cases] if max_cases else ordered)
    return cases


def _round_robin(lists: list[list[Case]]) -> Iterable[list[Case]]:
    for index in range(max((len(items) for items in lists), default=0)):
        yield [items[index] for items in lists if index < len(items)]


def _slab(shape: Sequence[int], slices: int) -> slice:
    if not slices or slices >= shape[2]:
        return slice(None)
    start = (shape[2] - slices) // 2
    return slice(start, start + slices)


def _tissue_maps(case: Case, grid: Grid) -> dict[str, np.ndarray] | None:
    """The subject's probability maps (tissues and lesions) on ``grid``, or None when its
    derivatives have no GM, WM and CSF maps.

    The simulator writes them on its 1 mm anatomy grid; they are carried to the image grid by
    the simulator's own acquisition model (``simulate.acquisition.acquire``: its point-spread
    function, then sampling), so each voxel gets the fractions that its intensity was made of.
    """
    maps = find_subject_maps(case.dataset, case.target.subject)
    if maps.tissues is None:
        return None
    key = (grid.shape, tuple(np.round(grid.affine, 6).ravel()))
    return {name: _fractions_on(str(path), *key) for name, path in maps.labels.items()}


@lru_cache(maxsize=16)
def _fractions_on(path: str, shape: tuple[int, ...], affine: tuple[float, ...]) -> np.ndarray:
    from tumsyn.simulate.acquisition import acquire

    image = nib.load(path)
    fractions = np.asarray(image.dataobj, dtype=np.float32)
    target = Grid(shape, np.reshape(affine, (4, 4)))
    if fractions.shape == shape and np.allclose(image.affine, target.affine, atol=1e-4):
        return fractions
    return acquire(fractions, Grid(fractions.shape, image.affine), target)


def load_case(case: Case, slices: int = 0, erode: int = 0) -> CaseData:
    """Read a case's source and truth (and tissue maps), cropped to a central axial slab; the
    brain mask eroded by ``erode`` voxels (see :func:`tumsyn.evaluate.report.evaluate_pair`)."""
    source = nib.load(case.source.path)
    target = nib.load(case.target.path)
    truth = np.asarray(target.dataobj, dtype=np.float32)
    crop = (slice(None), slice(None), _slab(truth.shape, slices))
    maps = _tissue_maps(case, Grid(truth.shape, target.affine))
    if maps is not None:
        maps = {name: volume[crop] for name, volume in maps.items()}
        mask = sum(maps.values()) > 0.5
    else:
        mask = truth[crop] > 0
    mask = eroded(mask, erode)
    tissues = None if maps is None else {name: maps[name] for name in TISSUES}
    return CaseData(case, source.slicer[crop], truth[crop], mask, tissues, _lesions(maps, mask))


def _lesions(maps: dict[str, np.ndarray] | None, mask: np.ndarray) -> np.ndarray | None:
    """The lesion map of a case, or None where it has too little lesion to measure."""
    if maps is None or not any(name in maps for name in LESIONS):
        return None
    lesions = sum(maps[name] for name in LESIONS if name in maps)
    return lesions if float(lesions[mask].sum()) >= MIN_LESION_VOXELS else None


def score(data: CaseData, prediction: np.ndarray) -> dict[str, float | None]:
    """The paper's PSNR and SSIM, MAE and the contrast errors of one prediction."""
    scores: dict[str, float | None] = {
        "psnr": psnr(data.truth, prediction, data.mask),
        "ssim": ssim(data.truth, prediction, data.mask),
        "mae": mae(data.truth, prediction, data.mask),
        "gm_wm_error": None,
        "csf_wm_error": None,
        "lesion_wm_error": None,
    }
    if data.tissues is not None:
        try:
            errors = contrast_errors(
                data.truth, prediction, data.tissues, data.mask, lesions=data.lesions
            )
        except ValueError:  # a ratio is undefined (e.g. a constant prediction): no value
            return scores
        scores["gm_wm_error"], scores["csf_wm_error"] = errors["gm_wm"], errors["csf_wm"]
        scores["lesion_wm_error"] = errors.get("lesion_wm")
    return scores


Method = Callable[[CaseData], np.ndarray]


def copy_source(data: CaseData) -> np.ndarray:
    """The source itself (source and target share a grid here, so trilinear resampling of the
    source onto the target grid is the identity and gives the same row)."""
    return np.asarray(data.source.dataobj, dtype=np.float32)


def inverted_source(data: CaseData) -> np.ndarray:
    """The source's intensities flipped inside the brain (a T2w from a T1w, at its simplest)."""
    source = copy_source(data)
    inside = source[data.mask]
    return np.where(data.mask, inside.max() + inside.min() - source, 0.0).astype(np.float32)


#: Baselines that need no training: method name -> function of a case.
BASELINES: dict[str, Method] = {"copy source": copy_source, "inverted source": inverted_source}


def _request_digest(data: CaseData, patch_size: int) -> str:
    """A short digest of a synthesis request: the source file's bytes, the target prompt and the
    patch size (the checkpoint is the cache folder's name)."""
    digest = hashlib.sha256(f"{data.case.target.prompt}|{patch_size}|".encode())
    with open(data.case.source.path, "rb") as file:
        digest.update(hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()[:12]


def model_method(checkpoint: str | os.PathLike, cache: Path | None, patch_size: int) -> Method:
    """A method that synthesizes each case's target with a pipeline checkpoint.

    Predictions are kept in ``cache`` (one NIfTI per case, in a folder named by the checkpoint's
    content digest, so a checkpoint replaced under the same name is never answered from an old
    one's predictions) and reused, so experiments that share cases share the synthesis. A
    prediction's file name carries a digest of what it was made from (:func:`_request_digest`),
    so a re-rendered source or an edited sidecar is synthesized anew.
    """
    from tumsyn import Synthesizer

    synthesizer = None
    checkpoint = Path(checkpoint)
    folder = None

    def predict(data: CaseData) -> np.ndarray:
        nonlocal synthesizer, folder
        if cache is not None and folder is None:
            with open(checkpoint, "rb") as file:
                folder = cache / hashlib.file_digest(file, "sha256").hexdigest()[:16]
        name = f"{data.case.name}_slab{data.truth.shape[2]}_{_request_digest(data, patch_size)}.nii"
        path = None if folder is None else folder / name
        if path is not None and path.is_file():
            return np.asarray(nib.load(path).dataobj, dtype=np.float32)
        if synthesizer is None:
            synthesizer = Synthesizer.from_checkpoint(checkpoint, patch_size=patch_size)
        source = data.case.source.metadata  # its modality picks a routed model's network
        image = synthesizer(data.source, data.case.target.prompt, input_modality=source.modality)
        prediction = np.asarray(image.dataobj, dtype=np.float32)
        if prediction.shape != data.truth.shape:
            raise ValueError(
                f"{checkpoint.name} returned {prediction.shape} for {data.case.name}, the "
                f"truth is {data.truth.shape}"
            )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_output(path) as temporary:
                nib.save(nib.Nifti1Image(prediction, data.source.affine), temporary)
        return prediction

    return predict


def evaluate_cases(
    cases: Sequence[Case],
    methods: dict[str, Method],
    *,
    slices: int = 0,
    erode: int = 0,
    progress: bool = True,
) -> list[dict]:
    """One row of scores per case and method (masks eroded by ``erode`` voxels)."""
    from tqdm import tqdm

    rows = []
    for case in tqdm(cases, desc="cases", unit="case", disable=not progress):
        data = load_case(case, slices, erode)
        for name, method in methods.items():
            rows.append(
                {
                    "task": task_name(case.task),
                    "input": case.task[0],
                    "method": name,
                    "subject": case.target.subject,
                    "case": case.name,
                    **score(data, method(data)),
                }
            )
    return rows


def summarise(
    rows: Sequence[dict],
    *,
    by: Sequence[str],
    metrics: Sequence[str],
    seed: int,
    overall: str | None = "all tasks",
) -> list[dict]:
    """Mean and the paper's bootstrap interval of each metric per group of ``rows``.

    Groups are the distinct values of the ``by`` columns, in order of first appearance; with
    ``overall``, the first ``by`` column is also pooled into a group of that name.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in by), []).append(row)
        if overall is not None:
            groups.setdefault((overall, *(row[key] for key in by[1:])), []).append(row)
    ordered = sorted(groups.items(), key=lambda item: item[0][0] == overall)
    summary = []
    for key, members in ordered:
        entry: dict = dict(zip(by, key, strict=True))
        for metric in metrics:
            values = [m[metric] for m in members if m[metric] is not None]
            values = [v for v in values if np.isfinite(v)]
            mean, low, high = mean_and_interval(values, seed=seed) if values else (None, None, None)
            entry |= {metric: mean, f"{metric}_low": low, f"{metric}_high": high}
        entry["n"] = len(members)
        summary.append(entry)
    return summary
