"""Training configurations: every hyperparameter in one YAML file, validated on load.

A stage-1 file (``tumsyn train-text``) and a stage-2 file (``tumsyn train``) share the sections
``data``, ``optimizer``, ``schedule`` and the loop settings; stage 2 adds the ``conditioner`` (by
default ``bmlip``: the frozen text tower of the stage-1 checkpoint ``text_encoder``), the
``tasks`` it trains on, and the patch settings.
Relative paths in a file are relative to that file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

from tumsyn.config import StrictConfig, validation_message
from tumsyn.errors import ConfigError
from tumsyn.infer.loading import BUNDLED_CHECKPOINTS
from tumsyn.metadata import canonical_modality
from tumsyn.metadata.augment import PromptAugmentation
from tumsyn.models.routed import canonical_route_key
from tumsyn.simulate.randomize import InputRandomizer
from tumsyn.yamlfiles import read_yaml

__all__ = [
    "ContrastiveTrainConfig",
    "SynthesisTrainConfig",
    "load_train_config",
]


class DataConfig(StrictConfig):
    source: str  # a BIDS folder or a CSV manifest
    cache: str = "cache"  # normalised volumes as memory-mapped .npy files
    validation_fraction: float = 0.2  # of the subjects, held out
    workers: int = 0  # DataLoader worker processes


class OptimizerConfig(StrictConfig):
    name: Literal["adam", "adamw"] = "adam"
    lr: PositiveFloat = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


class ScheduleConfig(StrictConfig):
    kind: Literal["cosine", "step", "constant"] = "cosine"
    warmup_steps: int = 0
    milestones: tuple[int, ...] = ()  # for "step": steps at which lr is multiplied by gamma
    gamma: float = 0.5
    min_lr_fraction: float = 0.0  # for "cosine": the final lr as a fraction of lr


class _TrainConfig(StrictConfig):
    model: str | dict[str, Any]  # a packaged configuration name, a YAML path or a spec
    data: DataConfig
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    steps: PositiveInt = 1000
    batch_size: PositiveInt = 2
    seed: int = 0
    validate_every: PositiveInt = 100
    checkpoint_every: PositiveInt = 500
    grad_clip: PositiveFloat | None = 1.0  # max gradient norm (None: no clipping)
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    device: str = "auto"  # "auto": CUDA when available, else CPU
    out: str = "runs/run"


class ContrastiveTrainConfig(_TrainConfig):
    """Stage 1: BMLIP, contrastive image-text pre-training."""

    stage: Literal["text"] = "text"
    spacing: PositiveFloat = 2.0  # mm: volumes are resampled to this before cropping
    validation_batches: PositiveInt = 4
    prompt_augmentation: PromptAugmentation | None = None  # vary voxel size, age and sex


class GeneratorConfig(StrictConfig):
    """Stage-2 samples drawn on the fly from virtual subjects (``tumsyn.data.generated``)
    instead of a data set: randomised inputs of any contrast, exact targets at 0.7-3 mm."""

    subjects: PositiveInt = 8  # virtual subjects kept in memory (about 100 MB each)
    validation_subjects: PositiveInt = 2  # others, for the validation patches
    enhancing_fraction: float = 0.3
    targets: str = "library"  # the target protocols: a packaged list name or a YAML file
    target_voxel_size: tuple[PositiveFloat, PositiveFloat] = (0.7, 3.0)
    anisotropic: float = 0.3  # probability of independent per-axis target voxel sizes
    samples_per_epoch: PositiveInt = 1000
    workers: int = 0  # DataLoader worker processes (rendering is the slow part)
    inputs: InputRandomizer = InputRandomizer()
    # Only physical inputs of these modalities (e.g. [T1w]: a model for T1w scans); empty: any.
    input_modalities: tuple[str, ...] = ()
    # How inputs are scaled (tumsyn.data.volumes.NORMALISERS), recorded in the checkpoint:
    # "tumsyn" maps the 0.5th-99.5th percentiles to 0-1 (model v1), "scale" only divides by the
    # 99.5th, so a T2w's white matter or a T1w's CSF is not mapped onto the background's 0.
    input_normalisation: Literal["tumsyn", "scale"] = "tumsyn"
    # How targets are scaled (tumsyn.data.generated.GeneratedPairs): "image" by the whole
    # noise-free target's percentiles (models v1, v2's first networks), "normal_tissue" by its
    # lesion-free voxels', so the scale no longer depends on a lesion load that a patch cannot see.
    target_scale: Literal["image", "normal_tissue"] = "image"

    @field_validator("input_modalities")
    @classmethod
    def _input_modalities(cls, modalities: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(canonical_modality(m) for m in modalities)


class SynthesisTrainConfig(_TrainConfig):
    """Stage 2: the synthesis network, conditioned on a frozen stage-1 text encoder."""

    stage: Literal["synthesis"] = "synthesis"
    data: DataConfig | None = None  # a data set of co-registered pairs, or:
    generator: GeneratorConfig | None = None  # samples generated from virtual subjects
    # What turns target prompts into features (tumsyn.models.conditioners): bmlip (the frozen
    # stage-1 text tower), untrained (that tower's architecture, random frozen weights), onehot,
    # metadata, sentence. The model's text_dim is set to the conditioner's feature size.
    conditioner: Literal["bmlip", "untrained", "onehot", "metadata", "sentence"] = "bmlip"
    # bmlip, untrained: a stage-1 checkpoint, or a pipeline (a bundled model's name) whose text
    # tower it takes, so that a fine-tuned shipped model keeps the prompt features it learned.
    text_encoder: str | None = None
    # Fine-tuning: start from the synthesis network of this checkpoint (a stage-2 run's
    # model.safetensors, a pipeline, or a bundled model's name); the optimizer starts afresh.
    init: str | None = None
    # With a routed init (model v2 keeps a network per input modality): which one to start from,
    # by its key (T2w, T1w:FLAIR; `tumsyn models` lists those of the bundled models).
    init_network: str | None = None
    # Ordered (source, target) modality pairs to train on; empty: every pair of a subject's images.
    # One pair makes a task-specific model (the paper's SC-GAN role).
    tasks: tuple[tuple[str, str], ...] = ()
    patch_size: PositiveInt = 32
    queries: PositiveInt = 8000
    scale_range: tuple[float, float] = (1.0, 3.0)
    anisotropic: float = 0.5  # probability of independent per-axis scales
    subject_dropout: float = 0.0  # probability that a target prompt leaves out age and sex
    validation_patches: PositiveInt = 16

    @field_validator("tasks")
    @classmethod
    def _modalities(cls, tasks: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return tuple((canonical_modality(a), canonical_modality(b)) for a, b in tasks)

    @model_validator(mode="after")
    def _one_source(self) -> SynthesisTrainConfig:
        if (self.data is None) == (self.generator is None):
            raise ValueError("give either 'data' (a data set) or 'generator', not both or none")
        if self.generator is not None and self.tasks:
            raise ValueError("'tasks' filters a data set's pairs; a generator has none")
        return self

    @field_validator("init_network")
    @classmethod
    def _network_key(cls, key: str | None) -> str | None:
        return None if key is None else canonical_route_key(key)

    @model_validator(mode="after")
    def _init_network_needs_init(self) -> SynthesisTrainConfig:
        if self.init_network is not None and self.init is None:
            raise ValueError("init_network names a network of 'init', which is not given")
        return self

    @model_validator(mode="after")
    def _text_encoder(self) -> SynthesisTrainConfig:
        if self.conditioner in ("bmlip", "untrained") and self.text_encoder is None:
            raise ValueError(
                f"text_encoder: the {self.conditioner} conditioner needs a stage-1 checkpoint"
            )
        return self


def _resolve(value: str, folder: Path) -> str:
    path = Path(value)
    return str(path if path.is_absolute() else folder / path)


def load_train_config(
    path: str | os.PathLike, stage: str
) -> ContrastiveTrainConfig | SynthesisTrainConfig:
    """Read and validate a training YAML file for ``stage`` (``text`` or ``synthesis``)."""
    path = Path(path)
    content = read_yaml(path, missing="no such training configuration")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of training settings")
    folder = path.parent
    if isinstance(content.get("data"), dict):
        for key in ("source", "cache"):
            if isinstance(content["data"].get(key), str):
                content["data"][key] = _resolve(content["data"][key], folder)
    generator = content.get("generator")
    if isinstance(generator, dict) and str(generator.get("targets", "")).endswith(
        (".yaml", ".yml")
    ):
        generator["targets"] = _resolve(generator["targets"], folder)
    if isinstance(content.get("out"), str):
        content["out"] = _resolve(content["out"], folder)
    for key in ("text_encoder", "init"):  # a bundled model's name stays a name
        if isinstance(content.get(key), str) and content[key] not in BUNDLED_CHECKPOINTS:
            content[key] = _resolve(content[key], folder)
    model = content.get("model")
    if isinstance(model, str) and model.endswith((".yaml", ".yml")):
        content["model"] = _resolve(model, folder)
    config_class = ContrastiveTrainConfig if stage == "text" else SynthesisTrainConfig
    try:
        return config_class(**content)
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_message(error)}") from None
