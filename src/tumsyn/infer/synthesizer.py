"""The Python API of synthesis: load a pipeline once, then turn images into other contrasts.

    >>> import tumsyn
    >>> synth = tumsyn.Synthesizer.from_checkpoint()          # doctest: +SKIP
    >>> flair = synth("sub-01_T1w.nii.gz", "FLAIR")             # doctest: +SKIP
    >>> flair.prompt, flair.warnings                            # doctest: +SKIP

A :class:`Synthesizer` holds the model and the validated :class:`SynthesisOptions`; calling it
reads nothing but the image it is given and writes nothing (file output is
:func:`tumsyn.infer.files.synthesize_file`). It keeps no state between calls, so one instance
serves many images, from several threads at once.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from tumsyn.data.volumes import NORMALISERS, recorded_normalisation
from tumsyn.distributed import environment_world
from tumsyn.errors import ConfigError, ImageError
from tumsyn.infer.coverage import coverage_warnings
from tumsyn.infer.loading import ignored_prompt_fields, model_name, read_pipeline_metadata
from tumsyn.infer.modality_guess import ModalityGuess, guess_input_modality
from tumsyn.infer.options import SynthesisOptions
from tumsyn.infer.target import checked_prompt, resolve_target
from tumsyn.infer.volume import synthesize_volume
from tumsyn.io import Volume, as_volume, check_grid_size, load_nifti, nifti_image
from tumsyn.metadata import ImagingMetadata, canonical_modality, modality_from_file_name
from tumsyn.models.checkpoint import load_checkpoint
from tumsyn.models.pipeline import SynthesisPipeline
from tumsyn.models.routed import RoutedNetwork, reads_by_guess

__all__ = ["ImageLike", "SynthesizedImage", "Synthesizer", "TargetLike"]

ImageLike = str | os.PathLike | nib.spatialimages.SpatialImage | np.ndarray | torch.Tensor
TargetLike = str | ImagingMetadata | None


class SynthesizedImage(nib.Nifti1Image):
    """A synthesized image (a nibabel ``Nifti1Image``) with what made it.

    Attributes:
        prompt: the prompt the model was given (without the fields it ignores).
        metadata: the target metadata as asked for.
        warnings: sentences on how the target lies outside the model's training data (the output
            is then an extrapolation); empty when it does not.
    """

    prompt: str = ""
    metadata: ImagingMetadata | None = None
    warnings: tuple[str, ...] = ()


class Synthesizer:
    """A loaded synthesis pipeline and its options: ``synth(image, target) -> image``.

    Make one with :meth:`from_checkpoint`. The model is on its device and in eval mode; the
    checkpoint's facts (name, training coverage, input scaling, the prompt fields it ignores)
    travel with it.

    Args:
        pipeline: text tower + synthesis network.
        meta: what the checkpoint records (``spec``, ``extra``, ``path``).
        options: patch and run settings, with the patch size and overlap resolved.
        device: where the pipeline is.
    """

    def __init__(
        self,
        pipeline: SynthesisPipeline,
        meta: dict[str, Any],
        options: SynthesisOptions,
        device: torch.device,
    ) -> None:
        if options.patch_size is None or options.overlap is None:
            options = options.with_recommendation(meta["extra"].get("patch_settings", {}))
        self.pipeline, self.meta, self.options, self.device = pipeline, meta, options, device
        self.ignored_fields = ignored_prompt_fields(meta)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | os.PathLike | None = None,
        *,
        options: SynthesisOptions | None = None,
        **option_values: Any,
    ) -> Synthesizer:
        """Load a pipeline checkpoint (default: the bundled ``tumsyn-v2``).

        Args:
            checkpoint: a ``.safetensors`` pipeline (``tumsyn convert-official`` makes one of the
                official weights), a bundled model's name (``BUNDLED_CHECKPOINTS``), or ``None``
                for the default.
            options: the settings, or give them as keywords (``device="cpu"``, ``patch_size=48``);
                they are validated before the checkpoint is read.

        Raises:
            OptionError, ConfigError: a bad option; a checkpoint that is not a pipeline.
            InputFileError: no such checkpoint.
        """
        if options is not None and option_values:
            raise ConfigError("give the options either as an object or as keywords, not both")
        options = options if options is not None else SynthesisOptions(**option_values)
        meta = read_pipeline_metadata(checkpoint)
        options = options.with_recommendation(meta["extra"].get("patch_settings", {}))
        device = environment_world(options.device).device  # under torchrun: LOCAL_RANK's GPU
        return cls(load_checkpoint(meta["path"], device=device), meta, options, device)

    @property
    def name(self) -> str:
        """The model's recorded name (or its file name)."""
        return model_name(self.meta)

    def with_options(self, **changes: Any) -> Synthesizer:
        """The same loaded model with other options (the device cannot change)."""
        if "device" in changes:
            raise ConfigError("the device is chosen when the model is loaded (from_checkpoint)")
        return Synthesizer(self.pipeline, self.meta, self.options.replace(**changes), self.device)

    def target(
        self,
        target: TargetLike = None,
        *,
        source: str | os.PathLike | None = None,
        source_voxel_size: tuple[float, float, float] | None = None,
        **fields: Any,
    ) -> ImagingMetadata:
        """The complete target metadata for a request (see :func:`resolve_target`)."""
        return resolve_target(
            target, fields=fields, source=source, source_voxel_size=source_voxel_size
        )

    def model_target(self, metadata: ImagingMetadata) -> ImagingMetadata:
        """``metadata`` as the model is told it: without the prompt fields it was packaged to
        ignore (``ignored_fields``, e.g. age and sex for ``tumsyn-v2``: see
        :func:`~tumsyn.infer.loading.ignored_prompt_fields`)."""
        return dataclasses.replace(metadata, **dict.fromkeys(self.ignored_fields))

    def left_out(self, metadata: ImagingMetadata) -> tuple[str, ...]:
        """The fields ``metadata`` gives that the model leaves out of its prompt."""
        return tuple(name for name in self.ignored_fields if getattr(metadata, name) is not None)

    def __call__(
        self,
        image: ImageLike,
        target: TargetLike = None,
        *,
        affine: np.ndarray | None = None,
        progress: Callable[[Iterator], Iterator] | None = None,
        input_modality: str | None = None,
        **fields: Any,
    ) -> SynthesizedImage:
        """Synthesize ``target`` from ``image``.

        Args:
            image: a NIfTI path, a nibabel image, or a 3D array (numpy or torch) with ``affine``.
            target: a modality name (its packaged default protocol: ``"FLAIR"``), a full prompt,
                an :class:`ImagingMetadata`, or ``None`` with ``modality=...`` among ``fields``.
            fields: metadata fields that win over the target's (``te=100``, ``age=70``,
                ``voxel_size=(0.8, 0.8, 0.8)``). Without a voxel size the input's is kept.
            progress: wraps the iterator over patch batches (e.g. ``tqdm``).
            input_modality: the modality of ``image`` (default: what its file name tells,
                ``sub-01_T2w.nii.gz`` or ``IXI002-Guys-0828-T2.nii.gz``:
                :func:`~tumsyn.metadata.modality_from_file_name`; else, for a model with a
                network per input modality, guessed from its intensities, with a warning:
                :mod:`tumsyn.infer.modality_guess`); such a model reads the image with that
                modality's network (:mod:`tumsyn.models.routed`), others ignore it.

        Returns:
            The synthesized image on the input's field of view in world space, at the target
            voxel size, with ``prompt`` (what the model was told: without the fields it
            ignores), ``metadata`` (the target as asked for) and ``warnings``.

        Raises:
            ImageError, InputFileError: an unusable image; MetadataError, PromptTooLongError: an
            unusable target.
        """
        source_path = Path(image) if isinstance(image, (str, os.PathLike)) else None
        if input_modality is not None:
            input_modality = canonical_modality(input_modality)
        elif source_path is not None:
            input_modality = modality_from_file_name(source_path.name)
        volume = self._volume(image, affine)
        metadata = self.target(
            target, source=source_path, source_voxel_size=volume.voxel_size, **fields
        )
        return self.synthesize_volume(
            volume, metadata, progress=progress, input_modality=input_modality
        )

    def modality_guess(self, volume: Volume, input_modality: str | None) -> ModalityGuess | None:
        """How a model with a network per input modality reads an input that nobody named
        (``input_modality`` ``None``) or one of a modality it has no network for (a T2*w):
        by a guess from the image's intensities (:mod:`tumsyn.infer.modality_guess`), which
        picks the network whose inputs it looks like (a T2*w's CSF is not dark: the PD
        network; docs/decisions.md has the measurement). ``None`` where the model has a
        network for the input's modality or reads every input alike."""
        synth = self.pipeline.synth
        if not isinstance(synth, RoutedNetwork):
            return None
        if not reads_by_guess(synth.networks, input_modality):
            return None
        return guess_input_modality(volume.data, volume.voxel_size)

    def synthesize_volume(
        self,
        volume: Volume,
        metadata: ImagingMetadata,
        *,
        progress: Callable[[Iterator], Iterator] | None = None,
        input_modality: str | None = None,
    ) -> SynthesizedImage:
        """The core of :meth:`__call__` for a checked volume, a complete target and the input's
        modality (if known; else guessed, see :meth:`modality_guess`)."""
        guess = self.modality_guess(volume, input_modality)
        read_as = input_modality if guess is None else guess.modality
        result = self.synthesize_arrays(volume, metadata, progress=progress, input_modality=read_as)
        told = self.model_target(metadata)
        output = nifti_image(result.data, result.affine, image_class=SynthesizedImage)
        output.prompt, output.metadata = checked_prompt(told), metadata
        coverage = coverage_warnings(told, self.meta["extra"].get("coverage", {}))
        output.warnings = (*self.input_warnings(input_modality, guess), *coverage)
        return output

    def input_warnings(
        self, input_modality: str | None, guess: ModalityGuess | None = None
    ) -> list[str]:
        """How a model with a network per input modality read an input it was not told the
        modality of, or one of a modality it has no network for (``guess``, from
        :meth:`modality_guess`: with the network its intensities point to, else its fallback):
        the input is then outside what that network learned. None: the input's own network read
        it, or the model reads every input alike."""
        synth = self.pipeline.synth
        if guess is None or not isinstance(synth, RoutedNetwork):
            return []
        read_as = guess.modality or synth.fallback
        if input_modality is None:
            advice = ("name the input with its modality, e.g. sub-01_T2w.nii.gz, or give its "
                      "modality: --input-modality")  # fmt: skip
            return [
                f"the input's modality was not given and its file name does not tell; it "
                f"was read as {read_as} ({guess.reason}); if that is wrong, {advice}"
            ]
        why = "the network its intensities point to" if guess.features else "its fallback"
        return [
            f"the input is {canonical_modality(input_modality)}, which the model has no network "
            f"for; it was read as {read_as}, {why} ({guess.reason})"
        ]

    def synthesize_arrays(
        self,
        volume: Volume,
        metadata: ImagingMetadata,
        *,
        progress: Callable[[Iterator], Iterator] | None = None,
        plane: tuple[int, int] | None = None,
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_modality: str | None = None,
    ) -> Volume:
        """The synthesized data and affine (``plane``: only that plane, see
        :func:`tumsyn.infer.volume.synthesize_volume`; ``encode``, ``input_modality``: see
        :meth:`predictor`)."""
        if metadata.voxel_size is None or metadata.modality is None:
            raise ConfigError("the target needs a modality and a voxel size")
        options = self.options
        return synthesize_volume(
            self.predictor(
                checked_prompt(self.model_target(metadata)),
                encode,
                input_modality,
                str(metadata.modality),
            ),
            volume,
            metadata.voxel_size,
            patch_size=options.patch_size,
            overlap=options.overlap,
            blend=options.blend,
            batch=options.batch,
            device=self.device,
            normalise=NORMALISERS[recorded_normalisation(self.meta["extra"])],
            progress=progress,
            plane=plane,
        )

    def _volume(self, image: ImageLike, affine: np.ndarray | None) -> Volume:
        """The source as a checked :class:`Volume`, whichever form it came in."""
        nan_to_zero = self.options.nan_to_zero
        if isinstance(image, (str, os.PathLike)):
            if affine is not None:
                raise ImageError("an affine goes with an array, not with a file (it has its own)")
            return load_nifti(image, nan_to_zero=nan_to_zero)
        if isinstance(image, nib.spatialimages.SpatialImage):
            name = image.get_filename() or "image"
            check_grid_size(image.shape[:3], name)
            data = np.asarray(image.dataobj, dtype=np.float32)
            return as_volume(data, image.affine, name=name, nan_to_zero=nan_to_zero)
        if isinstance(image, (np.ndarray, torch.Tensor)):
            if affine is None:
                raise ImageError("an array needs its affine: synth(array, target, affine=...)")
            data = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
            return as_volume(data, affine, name="array", nan_to_zero=nan_to_zero)
        raise ImageError(
            "expected a NIfTI path, a nibabel image or an array with its affine, got "
            f"{type(image).__name__}"
        )

    def predictor(
        self,
        prompt: str,
        encode: Callable[[torch.Tensor], torch.Tensor] | None = None,
        input_modality: str | None = None,
        target_modality: str | None = None,
    ) -> Callable[..., torch.Tensor]:
        """The network with ``prompt`` bound, in the requested precision (``encode``,
        ``input_modality``, ``target_modality``: see :meth:`SynthesisPipeline.predictor`)."""
        predict = self.pipeline.predictor(prompt, encode, input_modality, target_modality)
        precision, device_type = self.options.precision, self.device.type
        if precision == "fp32" or (precision == "auto" and device_type != "cuda"):
            return predict

        def predict_bf16(*args: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                return predict(*args)

        return predict_bf16
