"""The settings of whole-volume synthesis, in one object validated before any work is done.

A bad value is refused when the object is made, so neither an image is read nor a model loaded
for a request that cannot run; the error (:class:`tumsyn.errors.OptionError`) names the option,
the value and what it accepts. pydantic does the checking: the options are plain typed fields,
strictly typed (``"32"`` is not a patch size), so a typo cannot slip through as a coercion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field, ValidationError, field_validator

from tumsyn.config import StrictConfig, first_problem
from tumsyn.errors import ConfigError, OptionError

__all__ = ["DEFAULT_PATCH_SETTINGS", "SynthesisOptions"]

# Patch side and overlap for checkpoints that recommend none (the checkpoint's
# ``extra["patch_settings"]`` wins; converted official pipelines recommend 60 and 10).
DEFAULT_PATCH_SETTINGS = {"patch_size": 32, "overlap": 8}


class SynthesisOptions(StrictConfig):
    """How a volume is cut into patches and run; none of it changes what is synthesized beyond
    small numerical differences.

    Args:
        patch_size: patch side in input voxels (``None``: the checkpoint's recommendation, else 32).
        overlap: overlap of neighbouring patches in input voxels (``None``: the checkpoint's
            recommendation, else 8); less than ``patch_size``.
        batch: patches per network call (memory grows with it).
        precision: ``fp32``, ``bf16`` (autocast) or ``auto``: bf16 on GPUs, fp32 on the CPU.
        device: ``auto`` (CUDA if torch sees it, else the CPU), ``cpu``, ``cuda``, ``cuda:1``...
        blend: half-width in input voxels of the cosine ramps across patch seams (at most half
            the overlap is used; 0 cuts hard).
        nan_to_zero: read NaN/Inf voxels of the source as 0 instead of refusing the image.

    Raises:
        OptionError: the first bad value, naming the option, the value and what it accepts.

    Example:
        >>> SynthesisOptions(patch_size=48, overlap=8).batch
        4
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    patch_size: int | None = Field(default=None, ge=1, le=512)
    overlap: int | None = Field(default=None, ge=0)
    batch: int = Field(default=4, ge=1, le=1024)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: str = "auto"
    blend: float = Field(default=2.0, ge=0.0, allow_inf_nan=False)
    nan_to_zero: bool = False

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise _option_error(error) from None
        if self.patch_size is not None and self.overlap is not None:
            _check_overlap(self.patch_size, self.overlap)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if value != "auto":
            try:
                torch.device(value)
            except (RuntimeError, ValueError):
                raise ValueError("'auto', 'cpu', 'cuda' or 'cuda:N'") from None
        return value

    def with_recommendation(self, recommended: Mapping[str, int]) -> SynthesisOptions:
        """These options with the patch size and overlap that were left open filled in from a
        checkpoint's recommendation (else :data:`DEFAULT_PATCH_SETTINGS`)."""
        settings = {**DEFAULT_PATCH_SETTINGS, **recommended}
        patch_size = settings["patch_size"] if self.patch_size is None else self.patch_size
        overlap = settings["overlap"] if self.overlap is None else self.overlap
        if self.overlap is None and overlap >= patch_size:  # a small patch asked for
            overlap = patch_size // 4
        _check_overlap(patch_size, overlap)
        return self.model_copy(update={"patch_size": patch_size, "overlap": overlap})

    def replace(self, **changes: Any) -> SynthesisOptions:
        """A copy with ``changes``, validated like a new object."""
        return SynthesisOptions(**{**self.model_dump(), **changes})


def _check_overlap(patch_size: int, overlap: int) -> None:
    if overlap >= patch_size:
        raise OptionError("overlap", overlap, f"less than the patch size {patch_size}")


def _option_error(error: ValidationError) -> ConfigError:
    """The first problem of a validation error as an :class:`OptionError` (an unknown option as a
    :class:`ConfigError` listing the known ones)."""
    problem = first_problem(error)
    if problem.kind == "extra_forbidden":
        known = ", ".join(SynthesisOptions.model_fields)
        return ConfigError(f"unknown synthesis option {problem.where!r}; the options are {known}")
    return OptionError(
        problem.where, problem.value, problem.message.removeprefix("Input should be ")
    )
