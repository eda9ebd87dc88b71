"""Evaluate synthesized images against the acquired ones: pairing, per-image rows, a summary.

The summary is the paper's: for each metric the mean over images and a bootstrap confidence
interval, from 100 resamples that each draw 70 % of the rows (rounded, at least one) *with
replacement* from a ``numpy.random.Generator`` seeded by the caller; the interval is the 2.5th and
97.5th percentiles of the 100 resampled means. The same seed gives the same interval. One image
has no interval (nothing to resample): its summary gives the mean alone.

Pairing: one prediction and one truth file, or two folders whose NIfTI files are paired by their
BIDS entities (see :func:`pair_folders`). In folder mode each subject's brain mask and GM/WM/CSF
maps are taken from the truth data set's derivatives when they lie on the truth's grid
(:func:`with_subject_maps`).
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tumsyn.errors import ImageError, InputFileError, TumsynError, TumsynWarning
from tumsyn.evaluate.derivatives import TISSUE_LABELS, find_subject_maps
from tumsyn.evaluate.metrics import contrast_errors, eroded, mae, psnr, ssim
from tumsyn.io import Volume, atomic_output, load_nifti, read_grid, save_json
from tumsyn.metadata.bids import anat_images, bids_entities

__all__ = [
    "BOOTSTRAP_FRACTION",
    "BOOTSTRAP_RESAMPLES",
    "EvaluationReport",
    "Pair",
    "PairingError",
    "Row",
    "bootstrap_interval",
    "evaluate",
    "evaluate_pair",
    "mean_and_interval",
    "pair_folders",
]

BOOTSTRAP_RESAMPLES = 100
BOOTSTRAP_FRACTION = 0.7
# Entities that tell two images of one subject apart; ``desc`` (``desc-tumsyn``) and the rest
# describe how a file was made, not what it shows, so they are not matched.
PAIRING_ENTITIES = ("sub", "ses", "run", "acq", "ce", "rec")
TISSUES = TISSUE_LABELS
_AFFINE_TOLERANCE = 1e-4
_METRICS = ("psnr", "ssim", "mae")
_CONTRASTS = ("gm_wm_error", "csf_wm_error")


class PairingError(TumsynError, ValueError):
    """Predictions and truths cannot be paired: a prediction without a truth, or an ambiguity."""


@dataclass(frozen=True)
class Pair:
    """A prediction, the truth it is compared with, and optional brain mask and GM/WM/CSF maps."""

    pred: Path
    truth: Path
    mask: Path | None = None
    tissues: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class Row:
    """The metrics of one image; the contrast errors are ``None`` without tissue maps."""

    pred: Path
    truth: Path
    psnr: float
    ssim: float
    mae: float
    gm_wm_error: float | None = None
    csf_wm_error: float | None = None

    def values(self) -> dict[str, float | None]:
        """Metric name -> value, in the column order of the CSV."""
        return {name: getattr(self, name) for name in (*_METRICS, *_CONTRASTS)}


@dataclass(frozen=True)
class EvaluationReport:
    """Per-image rows, the summary of each metric, and the truths that had no prediction."""

    rows: tuple[Row, ...]
    summary: dict[str, dict[str, float | int | None]]
    seed: int
    unevaluated: tuple[Path, ...] = field(default=())

    @property
    def columns(self) -> tuple[str, ...]:
        """The metric columns present: the contrast errors only when tissue maps were given."""
        with_tissues = any(row.gm_wm_error is not None for row in self.rows)
        return (*_METRICS, *_CONTRASTS) if with_tissues else _METRICS

    def to_dict(self) -> dict:
        """A JSON-ready description; non-finite values (PSNR of identical images) become null."""
        return {
            "bootstrap": {
                "resamples": BOOTSTRAP_RESAMPLES,
                "fraction": BOOTSTRAP_FRACTION,
                "replacement": True,
                "percentiles": [2.5, 97.5],
                "seed": self.seed,
            },
            "summary": {name: _finite_values(self.summary[name]) for name in self.columns},
            "rows": [
                {"pred": str(row.pred), "truth": str(row.truth)}
                | _finite_values({name: row.values()[name] for name in self.columns})
                for row in self.rows
            ],
            "evaluated": len(self.rows),
            "unevaluated_truths": [str(path) for path in self.unevaluated],
        }

    def save_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` atomically."""
        return save_json(path, self.to_dict())

    def save_csv(self, path: str | os.PathLike) -> Path:
        """Write one line per image (pred, truth, metrics) atomically."""
        path = Path(path)
        with atomic_output(path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(("pred", "truth", *self.columns))
            for row in self.rows:
                values = row.values()
                writer.writerow((row.pred, row.truth, *(repr(values[c]) for c in self.columns)))
        return path

    def table(self) -> list[str]:
        """Lines of a plain-text table: one per image, then the mean and interval of each metric."""
        header = ("pred", "truth", *self.columns)
        lines = [header]
        for row in self.rows:
            values = row.values()
            cells = (_number(values[name]) for name in self.columns)
            lines.append((row.pred.name, row.truth.name, *cells))
        for label, key in (("mean", "mean"), ("ci 2.5%", "ci_low"), ("ci 97.5%", "ci_high")):
            cells = (_number(self.summary[name][key]) for name in self.columns)
            lines.append((label, "", *cells))
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
        text = [line.rstrip() for line in text]
        note = f"{len(self.rows)} evaluated"
        if self.unevaluated:
            note += f", {len(self.unevaluated)} truths without a prediction"
        return [*text, note]


def _number(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _finite_values(values: Mapping[str, float | int | None]) -> dict[str, float | int | None]:
    return {
        name: None if isinstance(v, float) and not math.isfinite(v) else v
        for name, v in values.items()
    }


def bootstrap_interval(
    values: Sequence[float], *, seed: int, resamples: int = BOOTSTRAP_RESAMPLES
) -> tuple[float, float]:
    """The paper's bootstrap interval of the mean of ``values`` (see the module docstring).

    Args:
        values: one value per image.
        seed: seeds the ``numpy.random.Generator``: same seed, same interval.
        resamples: how many resamples (the paper: 100).

    Returns:
        ``(low, high)``: the 2.5th and 97.5th percentiles of the resampled means.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no values to bootstrap")
    generator = np.random.default_rng(seed)
    size = max(1, round(BOOTSTRAP_FRACTION * values.size))
    picks = generator.integers(0, values.size, size=(resamples, size))
    means = values[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def mean_and_interval(
    values: Sequence[float], *, seed: int
) -> tuple[float, float | None, float | None]:
    """The mean of ``values`` and its bootstrap interval (:func:`bootstrap_interval`), or no
    interval (None) where there is nothing to resample: one value has no spread, and an infinite
    mean (a PSNR of identical images) no percentiles."""
    mean = float(np.mean(values))
    if len(values) < 2 or not math.isfinite(mean):
        return mean, None, None
    return (mean, *bootstrap_interval(values, seed=seed))


def _summary(rows: Sequence[Row], seed: int) -> dict[str, dict[str, float | int | None]]:
    summary: dict[str, dict[str, float | int | None]] = {}
    for name in (*_METRICS, *_CONTRASTS):
        values = [row.values()[name] for row in rows if row.values()[name] is not None]
        if not values:  # contrast errors of images without tissue maps
            continue
        mean, low, high = mean_and_interval(values, seed=seed)  # type: ignore[arg-type]
        summary[name] = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(values)}
    return summary


# --- reading and checking images -------------------------------------------------------------


def _same_grid(first: Volume, second: Volume) -> bool:
    return first.data.shape == second.data.shape and bool(
        np.allclose(first.affine, second.affine, atol=_AFFINE_TOLERANCE, rtol=0)
    )


def _check_grid(volume: Volume, path: Path, truth: Volume, truth_path: Path) -> None:
    """Refuse images on different grids: voxel-wise metrics would compare different places."""
    if not _same_grid(volume, truth):
        raise ImageError(
            f"{path} (shape {volume.data.shape}) and {truth_path} (shape {truth.data.shape}) are "
            "not on the same grid (shape and affine); resample one onto the other first"
        )


def evaluate_pair(pair: Pair, *, tissues: Sequence[Path] | None = None, erode: int = 0) -> Row:
    """The metrics of one prediction against its truth.

    Args:
        pair: the files; without a mask file, the brain is the truth's non-zero voxels.
        tissues: GM, WM and CSF maps of the truth (labels or probabilities), in that order, for
            the contrast errors.
        erode: score only voxels this many voxels inside the mask (see
            :func:`~tumsyn.evaluate.metrics.eroded`: a prediction's clipped negatives or a skull
            strip's rim at the edge move every score).

    Raises:
        InputFileError, ImageError: a file is missing or unreadable, or the grids differ.
    """
    truth = load_nifti(pair.truth)
    pred = load_nifti(pair.pred)
    _check_grid(pred, pair.pred, truth, pair.truth)
    if pair.mask is None:
        mask = truth.data != 0
    else:
        mask_volume = load_nifti(pair.mask)
        _check_grid(mask_volume, pair.mask, truth, pair.truth)
        mask = mask_volume.data != 0
    mask = eroded(mask, erode)
    if not mask.any():
        after = f" after eroding it by {erode} voxels" if erode else ""
        raise ImageError(f"{pair.mask or pair.truth}: the brain mask is empty{after}")
    errors: dict[str, float] = {}
    tissues = pair.tissues or tissues
    if tissues is not None:
        errors = _contrast_errors(truth, pred, mask, pair.truth, tissues)
    try:
        return Row(
            pred=pair.pred,
            truth=pair.truth,
            psnr=psnr(truth.data, pred.data, mask),
            ssim=ssim(truth.data, pred.data, mask),
            mae=mae(truth.data, pred.data, mask),
            gm_wm_error=errors.get("gm_wm"),
            csf_wm_error=errors.get("csf_wm"),
        )
    except ValueError as error:
        raise ImageError(f"{pair.pred}: {error}") from None


def with_subject_maps(pair: Pair, root: Path) -> Pair:
    """``pair`` with its subject's brain mask and GM/WM/CSF maps from the truth data set's
    derivatives (:func:`tumsyn.evaluate.derivatives.find_subject_maps`), those on the truth's
    grid; maps on another grid are left out with a warning (resample them first)."""
    entities, _ = bids_entities(pair.truth.name)
    if "sub" not in entities:
        return pair
    subject = f"sub-{entities['sub']}" + (f"/ses-{entities['ses']}" if "ses" in entities else "")
    maps = find_subject_maps(root, subject)
    truth_grid = read_grid(pair.truth)

    def on_grid(path: Path) -> bool:
        grid = read_grid(path)
        same = grid.shape == truth_grid.shape and np.allclose(
            grid.affine, truth_grid.affine, atol=_AFFINE_TOLERANCE, rtol=0
        )
        if not same:
            warnings.warn(
                f"{path}: not on the grid of {pair.truth.name}; left out (resample it first)",
                TumsynWarning,
                stacklevel=3,
            )
        return same

    mask = maps.mask if maps.mask is not None and on_grid(maps.mask) else None
    tissues = maps.tissues
    if tissues is not None and not all(on_grid(path) for path in tissues.values()):
        tissues = None
    return replace(
        pair,
        mask=pair.mask or mask,
        tissues=pair.tissues or (None if tissues is None else tuple(tissues.values())),
    )


def _contrast_errors(
    truth: Volume, pred: Volume, mask: np.ndarray, truth_path: Path, tissues: Sequence[Path]
) -> dict[str, float]:
    if len(tissues) != len(TISSUES):
        raise TumsynError(f"give {len(TISSUES)} tissue maps (GM WM CSF), got {len(tissues)}")
    maps = {}
    for name, path in zip(TISSUES, tissues, strict=True):
        volume = load_nifti(path)
        _check_grid(volume, path, truth, truth_path)
        maps[name] = volume.data
    try:
        return contrast_errors(truth.data, pred.data, maps, mask)
    except ValueError as error:
        raise ImageError(f"tissue maps of {truth_path}: {error}") from None


# --- pairing ------------------------------------------------------------------------------------


def _nifti_files(folder: Path) -> list[Path]:
    """The images of a folder: its BIDS anatomical images if it has ``sub-*`` folders, else its
    own ``*.nii``/``*.nii.gz`` files (dot-files, such as unfinished writes, are passed over)."""
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such folder")
    if any(path.is_dir() for path in folder.glob("sub-*")):
        return anat_images(folder)
    return sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")
        and path.name.lower().endswith((".nii", ".nii.gz"))
    )


def _pairing_key(path: Path) -> tuple[str | None, ...]:
    entities, suffix = bids_entities(path.name)
    return (*(entities.get(name) for name in PAIRING_ENTITIES), suffix)


def _by_key(paths: Iterable[Path], what: str) -> dict[tuple[str | None, ...], Path]:
    keyed: dict[tuple[str | None, ...], Path] = {}
    for path in paths:
        key = _pairing_key(path)
        if key in keyed:
            raise PairingError(
                f"{keyed[key]} and {path} are both {what} for the same image (same "
                f"{'/'.join(PAIRING_ENTITIES)} entities and suffix); keep one"
            )
        keyed[key] = path
    return keyed


def pair_folders(pred_dir: Path, truth_dir: Path) -> tuple[list[Pair], list[Path]]:
    """Pair the NIfTI files of two folders by their BIDS entities.

    A derivatives name such as ``sub-01_ses-1_desc-tumsyn_FLAIR.nii.gz`` pairs with the truth
    ``sub-01_ses-1_FLAIR.nii.gz``: the ``sub``, ``ses``, ``run``, ``acq``, ``ce`` and ``rec``
    entities and the suffix must agree (``acq`` may differ when one truth alone fits: see
    :func:`_truth_key`); ``desc`` and other entities are ignored. Plain names without entities
    pair by their whole name.

    Returns:
        The pairs, in the predictions' order, and the truths without a prediction (not an
        error: a derivative folder may hold one contrast of many).

    Raises:
        PairingError: a prediction has no truth, or two files of one folder share a key.
        InputFileError: a folder is missing.
    """
    preds = _by_key(_nifti_files(pred_dir), "predictions")
    truths = _by_key(_nifti_files(truth_dir), "truths")
    if not preds:
        raise PairingError(f"{pred_dir}: no NIfTI predictions found")
    matched = {key: _truth_key(key, truths) for key in preds}
    unpaired = [preds[key] for key, found in matched.items() if found is None]
    if unpaired:
        raise PairingError(
            f"{unpaired[0]}: no truth in {truth_dir} with the same entities and suffix"
            + (f" (and {len(unpaired) - 1} more unpaired predictions)" if len(unpaired) > 1 else "")
        )
    pairs = [Pair(pred=path, truth=truths[matched[key]]) for key, path in preds.items()]
    used = set(matched.values())
    return pairs, [path for key, path in truths.items() if key not in used]


_ACQ = PAIRING_ENTITIES.index("acq")


def _truth_key(key: tuple, truths: Mapping[tuple, Path]) -> tuple | None:
    """The truth a prediction's key pairs with: the same key, else the one truth that differs
    only in ``acq``. ``synthesize-bids`` keeps its *source's* ``acq`` label (``acq-mprage`` of a
    T1w) in the name of a synthesized FLAIR, whose truth carries its own (``acq-spaceflair``)."""
    if key in truths:
        return key
    loose = [other for other in truths if _without_acq(other) == _without_acq(key)]
    if len(loose) > 1:
        names = ", ".join(truths[other].name for other in loose)
        raise PairingError(f"several truths differ only in their acq- label: {names}; keep one")
    return loose[0] if loose else None


def _without_acq(key: tuple) -> tuple:
    return key[:_ACQ] + key[_ACQ + 1 :]


def evaluate(
    pred: str | os.PathLike,
    truth: str | os.PathLike,
    *,
    mask: str | os.PathLike | None = None,
    tissues: Sequence[str | os.PathLike] | None = None,
    seed: int = 0,
    erode: int = 0,
) -> EvaluationReport:
    """Evaluate one prediction file against a truth file, or a folder of them against another.

    Args:
        pred, truth: two NIfTI files, or two folders (see :func:`pair_folders`).
        mask: a brain mask file (one pair only; default: the truth's non-zero voxels).
        tissues: GM, WM and CSF maps of the truth (one pair only) for the contrast errors.
        seed: seeds the bootstrap interval.
        erode: voxels to erode every brain mask by before scoring (see :func:`evaluate_pair`).
    """
    if erode < 0:
        raise TumsynError(f"--erode {erode}: give 0 or more voxels")
    pred, truth = Path(pred), Path(truth)
    for path in (pred, truth):
        if not path.exists():
            raise InputFileError(f"{path}: no such file or folder")
    unevaluated: list[Path] = []
    if pred.is_dir() and truth.is_dir():
        if mask is not None or tissues is not None:
            raise TumsynError("a mask and tissue maps are for one pair of files, not folders")
        pairs, unevaluated = pair_folders(pred, truth)
        pairs = [with_subject_maps(pair, truth) for pair in pairs]
    elif pred.is_dir() or truth.is_dir():
        raise TumsynError(f"{pred} and {truth}: give two files or two folders, not one of each")
    else:
        pairs = [Pair(pred=pred, truth=truth, mask=None if mask is None else Path(mask))]
    tissue_paths = None if tissues is None else [Path(path) for path in tissues]
    rows = tuple(evaluate_pair(pair, tissues=tissue_paths, erode=erode) for pair in pairs)
    return EvaluationReport(
        rows=rows, summary=_summary(rows, seed), seed=seed, unevaluated=tuple(unevaluated)
    )
