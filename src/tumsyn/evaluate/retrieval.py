"""Image-to-text retrieval with a stage-1 (BMLIP) model: which prompt describes this image?

The paper's Supplementary Fig. 1 ranks candidate prompts for an image by the softmax, over the
candidates, of ``exp(logit_scale) * cos(image, text)``: the quantity the contrastive loss trains.
A model that places images and their prompts together puts the true prompt first; checking this on
held-out images tells whether stage 1 learned the metadata before stage 2 relies on its text
encoder.

Images are prepared exactly as stage-1 training prepares them
(:class:`tumsyn.data.WholeVolumes`: percentile normalisation, resampling to ``spacing`` mm, a
crop of ``input_size^3`` around the brain), so that the model sees what it was trained on.

Example:
    >>> model = load_bmlip("runs/bmlip/model.safetensors")  # doctest: +SKIP
    >>> prompts = modality_prompts((1.0, 1.0, 1.0))  # doctest: +SKIP
    >>> rank_prompts(model, "sub-01_T1w.nii.gz", prompts)[0].prompt  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from tumsyn.data import ImageRecord, VolumeCache, WholeVolumes
from tumsyn.errors import ConfigError, InputFileError, MetadataError
from tumsyn.io import Volume, read_grid, save_nifti
from tumsyn.metadata import (
    MODALITIES,
    ImagingMetadata,
    default_protocol,
    format_prompt,
    parse_prompt,
    prompt_voxel_size,
)
from tumsyn.models.bmlip import BMLIP, contrastive_logits
from tumsyn.models.checkpoint import load_checkpoint, read_checkpoint_metadata
from tumsyn.text import tokenize
from tumsyn.train.config import ContrastiveTrainConfig

__all__ = [
    "DEFAULT_SPACING",
    "RankedPrompt",
    "RetrievalScores",
    "load_bmlip",
    "modality_prompts",
    "rank_prompts",
    "read_prompts",
    "recorded_spacing",
    "retrieval_scores",
]

#: Stage-1 training's default voxel size (mm); a checkpoint does not record the one it used.
DEFAULT_SPACING: float = ContrastiveTrainConfig.model_fields["spacing"].default

_NOT_STAGE_1 = "retrieve needs a stage-1 checkpoint (tumsyn train-text ... model.safetensors)"


class RankedPrompt(NamedTuple):
    """One candidate of a ranking: the prompt and its softmax probability over all candidates."""

    prompt: str
    probability: float


def load_bmlip(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> BMLIP:
    """The stage-1 model of a checkpoint, in eval mode.

    Raises:
        InputFileError, ConfigError: the file is missing or unreadable (see ``load_checkpoint``).
        ConfigError: the checkpoint holds another model, such as a synthesis pipeline, which keeps
            only the text tower and cannot encode images.
    """
    model = load_checkpoint(path, device=device)
    if not isinstance(model, BMLIP):
        name = model.spec.get("name", "?")
        raise ConfigError(f"{path}: a {name!r} checkpoint; {_NOT_STAGE_1}")
    return model


def recorded_spacing(path: str | os.PathLike) -> float:
    """The voxel size (mm) a stage-1 checkpoint's training resampled images to, as recorded in
    it; :data:`DEFAULT_SPACING` (the training config's default) for checkpoints from before
    tumsyn recorded it."""
    return float(read_checkpoint_metadata(path)["extra"].get("spacing", DEFAULT_SPACING))


def modality_prompts(voxel_size: Sequence[float]) -> list[str]:
    """The prompts of the seven packaged default protocols, at the image's voxel size.

    Only the modality (and its usual sequence parameters) differs between them, so ranking them
    asks the model which contrast the image is. The voxel size is rounded as prompts are.
    """
    if len(voxel_size) != 3:
        raise MetadataError(f"voxel_size must have 3 values, got {len(voxel_size)}")
    rounded = prompt_voxel_size(tuple(float(v) for v in voxel_size))  # type: ignore[arg-type]
    return [
        format_prompt(default_protocol(modality).metadata.replace(voxel_size=rounded))
        for modality in MODALITIES
    ]


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Candidate prompts from a text file: one per line; blank lines and ``#`` comments skipped.

    Each line is parsed and written back in the canonical form (:func:`format_prompt`), the text
    stage 1 was trained on, so spacing or number formatting cannot change a ranking.

    Raises:
        InputFileError: the file does not exist.
        MetadataError: a line is not a valid prompt, or repeats an earlier one (the message names
            the line); the file holds no prompt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such prompt file")
    prompts: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            prompt = format_prompt(parse_prompt(text))
        except MetadataError as error:
            raise type(error)(f"{path}:{number}: {error}") from None
        if prompt in first_line:
            raise MetadataError(f"{path}:{number}: repeats the prompt of line {first_line[prompt]}")
        first_line[prompt] = number
        prompts.append(prompt)
    if not prompts:
        raise MetadataError(f"{path}: no prompts (one per line; # starts a comment)")
    return prompts


def _input_size(model: BMLIP) -> int:
    """The edge of the cube the image tower takes, as stage-1 training reads it."""
    return int(model.spec["args"]["vision"]["input_size"])


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _stage1_images(
    records: Sequence[ImageRecord], cache: VolumeCache, *, input_size: int, spacing: float
) -> WholeVolumes:
    """The records as stage-1 training sees them (prompts are not needed, so all map to 0)."""
    return WholeVolumes(
        records,
        cache,
        {record.prompt: 0 for record in records},
        input_size=input_size,
        spacing=spacing,
    )


def _image_tensor(
    image: str | os.PathLike | Volume, *, input_size: int, spacing: float
) -> torch.Tensor:
    """``(1, 1, S, S, S)`` tensor of one image, through the training data set.

    A :class:`Volume` is written to a temporary NIfTI file first: the training pipeline reads
    images from files, and going through it keeps one preprocessing in the project.
    """
    with tempfile.TemporaryDirectory(prefix="tumsyn-retrieve-") as folder:
        if isinstance(image, Volume):
            path = save_nifti(Path(folder) / "image.nii", image.data, image.affine)
        else:
            path = Path(image)
        record = ImageRecord(path=path, subject="", metadata=ImagingMetadata(), prompt="")
        images = _stage1_images(
            [record], VolumeCache(Path(folder) / "cache"), input_size=input_size, spacing=spacing
        )
        return images[0]["image"][None]


def _check_spacing(spacing: float) -> float:
    spacing = float(spacing)
    if not (np.isfinite(spacing) and spacing > 0):
        raise ConfigError(f"spacing must be a positive number of mm, got {spacing!r}")
    return spacing


@torch.no_grad()
def _text_features(model: BMLIP, prompts: Sequence[str]) -> torch.Tensor:
    """``(N, embed_dim)`` features of the prompts, tokenized to the model's context length."""
    ids = tokenize(list(prompts), context_length=model.context_length)
    return model.encode_text(ids.to(_device(model)))


@torch.no_grad()
def rank_prompts(
    model: BMLIP,
    image: str | os.PathLike | Volume,
    prompts: Sequence[str],
    *,
    spacing: float = DEFAULT_SPACING,
) -> list[RankedPrompt]:
    """Candidate prompts for an image, most probable first.

    Args:
        model: a stage-1 model in eval mode (:func:`load_bmlip` gives one); its device is used.
        image: a NIfTI path or a :class:`Volume`, prepared as stage-1 training prepares images.
        prompts: two or more distinct candidates.
        spacing: the voxel size (mm) the model was trained at (the training config's
            ``spacing``).

    Returns:
        Every candidate with ``softmax(exp(logit_scale) * cos(image, text))`` over the candidates;
        probabilities sum to 1; ties keep the order of ``prompts``.
    """
    if not isinstance(model, BMLIP):
        raise ConfigError(f"model must be a BMLIP (stage 1), got {type(model).__name__}")
    prompts = list(prompts)
    if len(prompts) < 2:
        raise MetadataError(f"ranking needs at least 2 candidate prompts, got {len(prompts)}")
    if len(set(prompts)) != len(prompts):
        raise MetadataError("candidate prompts must be distinct")
    spacing = _check_spacing(spacing)
    volume = _image_tensor(image, input_size=_input_size(model), spacing=spacing)
    image_features = model.encode_image(volume.to(_device(model)))
    logits = contrastive_logits(image_features, _text_features(model, prompts), model.logit_scale)
    probabilities = logits[0].float().softmax(dim=0).cpu().tolist()
    order = sorted(range(len(prompts)), key=lambda i: -probabilities[i])
    return [RankedPrompt(prompts[i], probabilities[i]) for i in order]


@dataclass(frozen=True)
class RetrievalScores:
    """Top-1 accuracies of image->text and image->modality retrieval over a data set.

    Chance beside each: ``text_chance`` is the mean of ``1 / candidates`` over the images (0.1 when
    the data set has ten distinct prompts or more), ``modality_chance`` is 1/7. ``modality_*`` is
    NaN when no image states its modality.
    """

    images: int
    text_top1: float
    text_chance: float
    text_candidates: int
    modality_images: int
    modality_top1: float
    modality_chance: float
    seed: int

    def rows(self) -> list[dict]:
        """One table row per task (for ``benchmarks/common.report``)."""
        return [
            {"task": "image->text", "images": self.images, "candidates": self.text_candidates,
             "top1": round(self.text_top1, 4), "chance": round(self.text_chance, 4)},
            {"task": "image->modality", "images": self.modality_images,
             "candidates": len(MODALITIES), "top1": round(self.modality_top1, 4),
             "chance": round(self.modality_chance, 4)},
        ]  # fmt: skip


def _draw_candidates(
    true_index: int, others: int, count: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of the true prompt and ``count - 1`` others of ``others + 1`` prompts, shuffled.

    Shuffled so that a tie between equal scores cannot favour the true prompt.
    """
    pool = np.delete(np.arange(others + 1), true_index)
    chosen = rng.choice(pool, size=min(count - 1, pool.size), replace=False)
    return rng.permutation(np.append(chosen, true_index))


def _prompt_voxel_size(record: ImageRecord) -> tuple[float, ...]:
    """The voxel size a record's prompt states, else its header's (rounded as prompts are)."""
    if record.metadata.voxel_size is not None:
        return tuple(record.metadata.voxel_size)
    return prompt_voxel_size(read_grid(record.path).voxel_size)


@torch.no_grad()
def retrieval_scores(
    model: BMLIP,
    records: Sequence[ImageRecord],
    *,
    candidates: int = 10,
    seed: int = 0,
    spacing: float = DEFAULT_SPACING,
    cache: str | os.PathLike | None = None,
) -> RetrievalScores:
    """Top-1 image->text retrieval among ``candidates`` prompts and image->modality among seven.

    For each image the candidates are its own prompt and ``candidates - 1`` other distinct
    prompts of the data set, drawn with ``numpy.random.default_rng(seed)``; image->modality ranks
    :func:`modality_prompts` at the image's voxel size (images without a modality are left out).

    Args:
        model: a stage-1 model in eval mode.
        records: the images (``tumsyn.data.load_index``), at least two distinct prompts.
        candidates: prompts per image, at least 2.
        seed: same seed, same candidates.
        spacing: the voxel size (mm) the model was trained at.
        cache: folder for normalised volumes (default: a temporary one).
    """
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 2:
        raise ConfigError(f"candidates must be an integer of at least 2, got {candidates!r}")
    spacing = _check_spacing(spacing)
    prompts = sorted({record.prompt for record in records})
    if len(prompts) < 2:
        raise ConfigError(f"retrieval needs at least 2 distinct prompts, got {len(prompts)}")
    rng = np.random.default_rng(seed)
    text_features = _text_features(model, prompts)
    modality_features: dict[tuple[float, ...], torch.Tensor] = {}
    text_hits, modality_hits, modality_images = 0, 0, 0
    text_chance = 0.0
    with tempfile.TemporaryDirectory(prefix="tumsyn-retrieval-") as folder:
        volumes = VolumeCache(cache if cache is not None else folder)
        images = _stage1_images(records, volumes, input_size=_input_size(model), spacing=spacing)
        for index, record in enumerate(records):
            features = model.encode_image(images[index]["image"][None].to(_device(model)))
            truth = prompts.index(record.prompt)
            chosen = _draw_candidates(truth, len(prompts) - 1, candidates, rng)
            logits = contrastive_logits(features, text_features[chosen], model.logit_scale)
            text_hits += int(chosen[int(logits[0].argmax())] == truth)
            text_chance += 1 / len(chosen)
            if record.metadata.modality is None:
                continue
            voxel_size = _prompt_voxel_size(record)
            if voxel_size not in modality_features:
                modality_features[voxel_size] = _text_features(model, modality_prompts(voxel_size))
            logits = contrastive_logits(features, modality_features[voxel_size], model.logit_scale)
            modality_hits += int(MODALITIES[int(logits[0].argmax())] == record.metadata.modality)
            modality_images += 1
    count = len(records)
    return RetrievalScores(
        images=count,
        text_top1=text_hits / count,
        text_chance=text_chance / count,
        text_candidates=min(candidates, len(prompts)),
        modality_images=modality_images,
        modality_top1=modality_hits / modality_images if modality_images else float("nan"),
        modality_chance=1 / len(MODALITIES) if modality_images else float("nan"),
        seed=seed,
    )
