"""Stage-2 samples generated on the fly from virtual subjects: a randomised input, an exact target.

Where :class:`~tumsyn.data.synthesis.SynthesisPatches` cuts pairs out of a pre-rendered cohort,
this draws each sample from the anatomy (SynthSR's recipe, issue 14): the *input* is a
randomised acquisition of any contrast, resolution and quality
(:class:`~tumsyn.simulate.randomize.InputRandomizer`), the *target* the exact noise-free physics
of a prompt's protocol at the prompt's voxel size (0.7-3 mm, anisotropic included), so the model
learns to read any scan and to answer any voxel size it will be asked for.

Geometry: the input patch is ``P^3`` voxels of the input's own (possibly rotated, shifted,
thick-slice) grid around a random brain point; the queries are voxels of the target grid whose
centres fall inside that patch, with coordinates in the patch's [-1, 1] frame (array axis order,
as :mod:`tumsyn.data.synthesis`) and LIIF's cell size. Normalisation is what inference does to a
whole image: the input volume is rendered whole and scaled by its 0.5th and 99.5th percentiles;
the target by those of its noise-free tissue image (which the voxel kernel barely moves).

Every random choice of sample ``index`` in ``epoch`` comes from
``numpy.random.default_rng([seed, epoch, index])`` in :meth:`GeneratedPairs.parameters`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from tumsyn.data.synthesis import crop_padded
from tumsyn.data.volumes import NORMALISERS
from tumsyn.errors import ConfigError
from tumsyn.io import Grid
from tumsyn.metadata import (
    ImagingMetadata,
    canonical_modality,
    format_prompt,
    prompt_without_subject,
)
from tumsyn.metadata.augment import random_prompt_voxel_size
from tumsyn.simulate import Anatomy, render_on
from tumsyn.simulate.randomize import INPUT_MODALITIES, InputDraw, InputRandomizer, render_input
from tumsyn.simulate.render import scan_grid, tissue_object
from tumsyn.simulate.sequences import signal
from tumsyn.simulate.tissues import LESIONS

__all__ = ["GeneratedPairs", "GeneratedParameters"]

_PERCENTILES = (0.5, 99.5)  # of targets, as tumsyn.data.volumes.normalise_percentiles
_LESION_FREE = 0.05  # at most this lesion fraction: partial lesion voxels would set the top
#: How targets are scaled: by their whole noise-free image, or by its lesion-free voxels.
TARGET_SCALES = ("image", "normal_tissue")
_MAX_DRAWS = 1000  # input draws tried for one of ``input_modalities`` before giving up


@dataclass(frozen=True)
class GeneratedParameters:
    """The random choices behind one generated sample."""

    anatomy: int
    target: ImagingMetadata  # the prompt's protocol, at its voxel size
    draw: InputDraw
    centre_mm: tuple[float, float, float]  # the patch centre, world coordinates
    query_seed: int
    without_subject: bool = False


class GeneratedPairs(Dataset):
    """Samples drawn from virtual subjects: ``source``, ``coord``, ``cell``, ``target`` as
    :class:`~tumsyn.data.synthesis.SynthesisPatches` gives them, and ``prompt`` as text.

    Args:
        anatomies: the virtual subjects samples are drawn from.
        targets: the target protocols (e.g. the packaged library); a sample takes one and a
            voxel size drawn from ``target_voxel_size``.
        randomizer: the ranges of the inputs.
        patch_size, queries: ``P`` and ``Q``.
        target_voxel_size: (low, high) mm of the prompt's voxel size.
        anisotropic: probability that the three target axes get independent sizes.
        subject_dropout: probability that the prompt leaves out age and sex.
        input_modalities: if given, every input is a physical protocol of one of these
            modalities (draws of others are rejected): a model for, say, T1w inputs only.
        normalisation: how inputs are scaled to [0, 1], a name of
            :data:`tumsyn.data.volumes.NORMALISERS`; the checkpoint records it for inference.
        target_scale: ``"image"`` maps the target's noise-free 0.5th and 99.5th percentiles to
            0 and 1 (clipped); ``"normal_tissue"`` takes the percentiles over voxels that are
            not lesion and does not clip above, so a lesion may exceed 1. Where lesions are
            the brightest tissue (FLAIR), ``"image"`` makes a subject's grey matter 0.6 or 1.0
            by its lesion load, which a patch without lesions cannot see (docs/decisions.md).
        seed, length: base seed; samples per epoch.
    """

    def __init__(
        self,
        anatomies: Sequence[Anatomy],
        targets: Sequence[ImagingMetadata],
        randomizer: InputRandomizer,
        *,
        patch_size: int = 32,
        queries: int = 8000,
        target_voxel_size: tuple[float, float] = (0.7, 3.0),
        anisotropic: float = 0.3,
        subject_dropout: float = 0.0,
        input_modalities: Sequence[str] = (),
        normalisation: str = "tumsyn",
        target_scale: str = "image",
        seed: int = 0,
        length: int = 1000,
    ) -> None:
        if not anatomies or not targets:
            raise ConfigError("GeneratedPairs needs at least one anatomy and one target protocol")
        self.anatomies, self.targets = list(anatomies), list(targets)
        self.randomizer = randomizer
        self.patch_size, self.queries = int(patch_size), int(queries)
        self.target_voxel_size = target_voxel_size
        self.anisotropic, self.subject_dropout = float(anisotropic), float(subject_dropout)
        self.input_modalities = frozenset(canonical_modality(m) for m in input_modalities)
        if self.input_modalities - INPUT_MODALITIES:
            raise ConfigError(
                f"input_modalities {sorted(self.input_modalities - INPUT_MODALITIES)}: the "
                f"randomizer draws physical inputs of {', '.join(sorted(INPUT_MODALITIES))} only"
            )
        if normalisation not in NORMALISERS:
            raise ConfigError(
                f"normalisation {normalisation!r} is not one of {sorted(NORMALISERS)}"
            )
        self.normalise = NORMALISERS[normalisation]
        if target_scale not in TARGET_SCALES:
            raise ConfigError(f"target_scale {target_scale!r} is not one of {list(TARGET_SCALES)}")
        self.target_scale = target_scale
        self.seed, self.length = int(seed), int(length)
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return self.length

    def parameters(self, index: int) -> GeneratedParameters:
        """Draw the random choices of sample ``index`` in the current epoch."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        rng = np.random.default_rng([self.seed, int(self._epoch), int(index)])
        which = int(rng.integers(len(self.anatomies)))
        anatomy = self.anatomies[which]
        voxel_size = random_prompt_voxel_size(rng, self.target_voxel_size, self.anisotropic)
        protocol = self.targets[int(rng.integers(len(self.targets)))]
        target = protocol.replace(
            voxel_size=voxel_size,
            age=anatomy.parameters.age,
            sex=anatomy.parameters.sex,
        )
        draw = self._draw_input(rng)
        brain = np.argwhere(anatomy.brain > 0.5)
        voxel = brain[int(rng.integers(len(brain)))]
        centre = anatomy.grid.affine[:3, :3] @ voxel + anatomy.grid.affine[:3, 3]
        without = bool(self.subject_dropout and rng.random() < self.subject_dropout)
        return GeneratedParameters(
            anatomy=which,
            target=target,
            draw=draw,
            centre_mm=tuple(float(c) for c in centre),
            query_seed=int(rng.integers(2**31)),
            without_subject=without,
        )

    def _draw_input(self, rng: np.random.Generator) -> InputDraw:
        """A randomised input; with ``input_modalities``, the first draw of one of them."""
        for _ in range(_MAX_DRAWS):
            draw = self.randomizer.make_params(rng)
            if not self.input_modalities or (
                draw.protocol is not None and draw.protocol.modality in self.input_modalities
            ):
                return draw
        raise ConfigError(
            f"input_modalities {sorted(self.input_modalities)}: no such input in {_MAX_DRAWS} "
            "draws; physics_probability must be above 0"
        )

    def _source(self, anatomy: Anatomy, p: GeneratedParameters) -> tuple[np.ndarray, Grid]:
        """The normalised input patch and its grid (a box of the whole input grid)."""
        image, affine = render_input(anatomy, p.draw)
        inverse = np.linalg.inv(affine)
        centre = inverse[:3, :3] @ np.asarray(p.centre_mm) + inverse[:3, 3]
        start = np.rint(centre).astype(int) - self.patch_size // 2
        shape = (self.patch_size,) * 3
        patch = crop_padded(self.normalise(image), start, shape)
        return patch, Grid(image.shape, affine).box(start, shape)

    def target_range(self, anatomy: Anatomy, target: ImagingMetadata) -> tuple[float, float]:
        """The target image's 0.5th and 99.5th percentiles, from its noise-free tissue image
        (over the voxels with almost no lesion, for ``"normal_tissue"``)."""
        signals = signal(anatomy.properties(target.field_strength), target)
        values = tissue_object(anatomy, signals)
        counted = values > 0
        if self.target_scale == "normal_tissue":
            lesion = sum(anatomy.fraction(name) for name in LESIONS)
            counted &= lesion < _LESION_FREE * anatomy.brain
        low, high = np.percentile(values[counted], _PERCENTILES)
        return float(low), float(high)

    def render(self, p: GeneratedParameters) -> dict:
        """The sample that ``p`` describes (no other randomness)."""
        anatomy = self.anatomies[p.anatomy]
        source, patch = self._source(anatomy, p)
        size = self.patch_size
        # Target voxels around the patch: a box of the target grid covering the patch's extent.
        whole = scan_grid(anatomy, p.target.voxel_size)
        first, last = patch.extent_in(whole)
        low = np.floor(first).astype(int)
        box = whole.box(low, np.ceil(last).astype(int) + 1 - low)
        values = render_on(anatomy.around(box), p.target, box)
        bottom, top = self.target_range(anatomy, p.target)
        ceiling = 1.0 if self.target_scale == "image" else None
        values = np.clip((values - bottom) / max(top - bottom, 1e-6), 0.0, ceiling)
        # Their coordinates in the patch's [-1, 1] frame; keep those inside it.
        voxels = np.argwhere(np.ones(box.shape, dtype=bool))
        to_patch = np.linalg.inv(patch.affine) @ box.affine
        in_patch = (to_patch[:3, :3] @ voxels.T + to_patch[:3, 3:4]).T
        coord = (2.0 * in_patch + 1.0) / size - 1.0
        inside = np.flatnonzero(np.all(np.abs(coord) <= 1.0, axis=1))
        rng = np.random.default_rng(p.query_seed)
        chosen = inside[rng.choice(inside.size, self.queries, replace=inside.size < self.queries)]
        ratio = np.asarray(p.target.voxel_size) / np.asarray(p.draw.voxel_size)
        cell = np.broadcast_to((2.0 * ratio / size).astype(np.float32), (self.queries, 3))
        prompt = format_prompt(p.target)
        if p.without_subject:
            prompt = prompt_without_subject(prompt)
        target = values[tuple(voxels[chosen].T)].astype(np.float32)
        return {
            "source": torch.from_numpy(source[None]),
            "coord": torch.from_numpy(coord[chosen].astype(np.float32)),
            "cell": torch.from_numpy(np.ascontiguousarray(cell)),
            "target": torch.from_numpy(target[:, None]),
            "prompt": prompt,
        }

    def __getitem__(self, index: int) -> dict:
        return self.render(self.parameters(index))
