"""Stage 2: train the synthesis network on pairs of co-registered images, prompts encoded by a
frozen conditioner (by default the stage-1 text tower; :mod:`tumsyn.models.conditioners`).

The conditioner runs once per distinct prompt before training. Its output is what the fusion
block expects: the pooled vector for the official block, tokens and their mask for tumsyn's
per-voxel cross-attention. Each checkpoint also writes ``pipeline.safetensors`` (conditioner +
network, with the coverage of the training targets), which ``tumsyn synthesize`` runs.

Every ordered pair (A, B) of a subject's images is a sample, so both directions (A -> B and
B -> A) are trained with the same weights, as the official code does in one step.

Validation: fixed patches of held-out subjects; PSNR of the prediction and of the copy-source
baseline (the low-resolution source interpolated at the query points) on the [0, 1] intensities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset

from tumsyn.data import (
    SynthesisPatches,
    VolumeCache,
    paired_records,
)
from tumsyn.data.generated import GeneratedPairs
from tumsyn.distributed import World
from tumsyn.errors import ConfigError
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.infer.loading import checkpoint_path
from tumsyn.metadata import parse_prompt, prompt_without_subject
from tumsyn.models import (
    BMLIP,
    SynthesisNetwork,
    TextEncoder,
    build,
    load_checkpoint,
    load_config,
    make_pipeline,
)
from tumsyn.models.conditioners import site_label
from tumsyn.models.liif import sample_grid
from tumsyn.models.pipeline import SynthesisPipeline, text_tower_spec
from tumsyn.models.routed import RoutedNetwork
from tumsyn.models.synth import extends_spec
from tumsyn.train.config import SynthesisTrainConfig
from tumsyn.train.loop import Stage, run_records, train
from tumsyn.train.sampling import EpochShuffle

__all__ = ["PromptFeatures", "initial_weights", "make_conditioner", "task_pairs", "train_synthesis"]


class PromptFeatures:
    """Frozen features of a fixed list of prompts, looked up by prompt index.

    Computed once before training: the data set has a few dozen prompts, the loop thousands of
    steps, and every conditioner is frozen.
    """

    def __init__(self, conditioner: nn.Module, prompts: list[str], *, pooled: bool) -> None:
        self.tokens, self.mask = conditioner.features(prompts, pooled=pooled)

    def to(self, device: torch.device) -> PromptFeatures:
        self.tokens = self.tokens.to(device)
        self.mask = None if self.mask is None else self.mask.to(device)
        return self

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.tokens[index], None if self.mask is None else self.mask[index]


def _stage1_text_tower(checkpoint: str) -> nn.Module:
    """The frozen text tower of a stage-1 checkpoint, or of a pipeline conditioned on one (a
    shipped model, whose fine-tuning must keep the prompt features it was trained with)."""
    model = load_checkpoint(checkpoint_path(checkpoint))
    if isinstance(model, BMLIP):
        return model.text_encoder().eval()
    if isinstance(model, SynthesisPipeline) and isinstance(model.text, TextEncoder):
        return model.text.eval()
    raise ConfigError(
        f"{checkpoint}: text_encoder must be a stage-1 (BMLIP) checkpoint or a pipeline "
        "conditioned on a BMLIP text tower"
    )


def make_conditioner(config: SynthesisTrainConfig, train_prompts: list[str]) -> nn.Module:
    """The frozen conditioner ``config.conditioner`` names, built with its spec.

    ``untrained`` rebuilds the stage-1 tower's architecture with weights drawn from
    ``config.seed``; ``onehot`` takes its sites from the training prompts.
    """
    kind = config.conditioner
    if kind in ("bmlip", "untrained"):
        tower = _stage1_text_tower(config.text_encoder)
        spec = text_tower_spec(tower)
        if kind == "bmlip":
            tower.spec = spec
            return tower
        torch.manual_seed(config.seed)
        return build(spec).eval()
    args = {}
    if kind == "onehot":
        sites = {site_label(parse_prompt(prompt)) for prompt in train_prompts}
        args["sites"] = sorted(site for site in sites if site is not None)
    return build({"name": kind, "args": args})


def initial_weights(model: SynthesisNetwork, checkpoint: str, key: str | None = None) -> None:
    """Copy the synthesis network of ``checkpoint`` (a stage-2 checkpoint, a pipeline or a
    bundled model's name; of a routed one, its network ``key``) into ``model``, which must have
    the same architecture, or one that extends the checkpoint's (a fusion or a context branch,
    :func:`~tumsyn.models.synth.extends_spec`: the extension's parameters keep their identity
    start)."""
    loaded = load_checkpoint(checkpoint_path(checkpoint))
    network = _chosen_network(loaded.synth if isinstance(loaded, SynthesisPipeline) else loaded,
                              checkpoint, key)  # fmt: skip
    if network.spec != model.spec and not extends_spec(model.spec, network.spec):
        raise ConfigError(
            f"init: {checkpoint} holds a different architecture than this run's model: "
            f"expected {model.spec['args']}, found {network.spec['args']}"
        )
    model.load_state_dict(network.state_dict(), strict=network.spec == model.spec)


def _chosen_network(network: nn.Module, checkpoint: str, key: str | None) -> SynthesisNetwork:
    """The network ``key`` of a routed model, or the one network of any other checkpoint."""
    if isinstance(network, RoutedNetwork):
        if key not in network.networks:
            wanted = "name one with init_network" if key is None else f"not {key}"
            raise ConfigError(
                f"init: {checkpoint} holds one network per input modality "
                f"({', '.join(network.networks)}); {wanted}"
            )
        return network.networks[key]
    if not isinstance(network, SynthesisNetwork):
        raise ConfigError(f"init: {checkpoint} holds no synthesis network (stage 2 or pipeline)")
    if key is not None:
        raise ConfigError(f"init_network: {checkpoint} holds a single network; leave it out")
    return network


def _network_spec(config: SynthesisTrainConfig, conditioner: nn.Module) -> dict:
    """The model's spec with ``text_dim`` set to the conditioner's feature size."""
    spec = load_config(config.model)
    if spec["name"] != "synth":
        raise ConfigError(f"model {config.model!r} is not a synthesis (stage 2) configuration")
    spec["args"]["text_dim"] = conditioner.embed_dim
    return spec


def task_pairs(pairs: list, tasks: tuple[tuple[str, str], ...]) -> list:
    """The (source, target) pairs whose modalities form one of ``tasks`` (all when empty)."""
    if not tasks:
        return pairs
    wanted = set(tasks)
    return [
        (source, target)
        for source, target in pairs
        if (str(source.metadata.modality), str(target.metadata.modality)) in wanted
    ]


def _pipeline(conditioner, network, facts: dict, target_prompts: list[str]):
    """The deployable pipeline of a checkpoint, recording what its training targets covered."""
    pipeline = make_pipeline(conditioner, network)
    extra = {
        "name": f"tumsyn ({facts['conditioner']} conditioner)",
        "coverage": coverage_from_prompts(target_prompts),
        "stage2": {key: facts[key] for key in ("step", "metrics", "conditioner", "tasks")},
        "text_encoder": facts["text_encoder"],
        "input_normalisation": facts["input_normalisation"],
        "training_data": "the data set of the run's configuration",
    }
    return pipeline, extra


def _psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of values in [0, 1]: (B, Q, 1) -> (B,)."""
    mse = ((prediction.clamp(0, 1) - target) ** 2).mean(dim=(1, 2))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def copy_source(batch) -> torch.Tensor:
    """The baseline: the low-resolution source, trilinearly interpolated at the query points."""
    return sample_grid(batch["source"], batch["coord"])


@dataclass
class _TrainingData:
    """What stage 2 trains and validates on, from a data set or from the generator."""

    dataset: Dataset
    validation: list[dict] | None
    target_prompts: list[str]  # what the model is asked for: coverage, one-hot sites
    workers: int
    prompts: list[str] = field(default_factory=list)  # a data set's, by index (else text)


def _cohort_data(config: SynthesisTrainConfig) -> _TrainingData:
    """Patches of co-registered pairs of ``config.data`` (prompts looked up by index)."""
    records = run_records(config)
    train_pairs = task_pairs(paired_records(records.train), config.tasks)
    validation_pairs = task_pairs(paired_records(records.validation), config.tasks)
    if not train_pairs:
        raise ConfigError(
            f"{config.data.source}: no subject has two images to pair"
            + (f" for the tasks {list(config.tasks)}" if config.tasks else "")
        )
    prompts, prompt_ids = records.prompts, records.prompt_ids
    if config.subject_dropout > 0:  # the prompts without age and sex get features too
        prompts = sorted({*prompts, *(prompt_without_subject(p) for p in prompts)})
        prompt_ids = {prompt: index for index, prompt in enumerate(prompts)}
    cache = VolumeCache(config.data.cache)
    settings = {
        "patch_size": config.patch_size,
        "queries": config.queries,
        "scale_range": config.scale_range,
        "anisotropic": config.anisotropic,
    }
    dataset = SynthesisPatches(train_pairs, cache, prompt_ids, seed=config.seed,
                               subject_dropout=config.subject_dropout, **settings)  # fmt: skip
    validation = None
    if validation_pairs:
        held_out = SynthesisPatches(  # pairs reused with new patches when there are fewer
            validation_pairs, cache, prompt_ids, seed=config.seed + 1,
            length=config.validation_patches, **settings,
        )  # fmt: skip
        validation = [held_out[i] for i in range(config.validation_patches)]
    targets = sorted({target.prompt for _, target in train_pairs})
    return _TrainingData(dataset, validation, targets, config.data.workers, prompts)


def input_normalisation(config: SynthesisTrainConfig) -> str:
    """How the run scales its inputs (a data set's volumes: always "tumsyn")."""
    return config.generator.input_normalisation if config.generator else "tumsyn"


def validation_subject_seed(seed: int) -> int:
    """The cohort seed of a generated run's validation subjects (apart from its training ones)."""
    return seed + 7919


def _generated_data(config: SynthesisTrainConfig) -> _TrainingData:
    """Samples drawn from virtual subjects (``config.generator``); prompts as text."""
    from tumsyn.metadata import format_prompt, load_protocols
    from tumsyn.simulate import CohortSettings, cohort_subject

    g = config.generator

    def subjects(count: int, seed: int) -> list:
        settings = CohortSettings(count, seed=seed, enhancing_fraction=g.enhancing_fraction)
        return [cohort_subject(settings, index) for index in range(1, count + 1)]

    targets = [protocol.metadata for protocol in load_protocols(g.targets)]
    settings = {"patch_size": config.patch_size, "queries": config.queries,
                "target_voxel_size": g.target_voxel_size, "anisotropic": g.anisotropic,
                "input_modalities": g.input_modalities,
                "normalisation": g.input_normalisation,
                "target_scale": g.target_scale}  # fmt: skip
    dataset = GeneratedPairs(subjects(g.subjects, config.seed), targets, g.inputs,
                             subject_dropout=config.subject_dropout, seed=config.seed,
                             length=g.samples_per_epoch, **settings)  # fmt: skip
    validation_subjects = subjects(g.validation_subjects, validation_subject_seed(config.seed))
    held_out = GeneratedPairs(validation_subjects, targets, g.inputs, seed=config.seed + 1,
                              length=config.validation_patches, **settings)  # fmt: skip
    validation = [held_out[i] for i in range(config.validation_patches)]
    sizes = g.target_voxel_size
    covered = [format_prompt(t.replace(voxel_size=(v, v, v))) for t in targets for v in sizes]
    return _TrainingData(dataset, validation, sorted(covered), g.workers)


def _encoder(conditioner: nn.Module, data: _TrainingData, *, pooled: bool, device):
    """``prompts -> (features, mask)`` on ``device``: a lookup of precomputed features for a
    data set's prompt indices, the frozen conditioner run per batch for generated prompt text
    (every generated sample has its own voxel size, so there is no fixed list to precompute)."""
    if data.prompts:
        return PromptFeatures(conditioner, data.prompts, pooled=pooled).to(device)

    def encode(prompts) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad():
            text, mask = conditioner.features(list(prompts), pooled=pooled)
        return text.to(device), None if mask is None else mask.to(device)

    return encode


def _batch_of_one(sample: dict, device) -> dict:
    return {
        key: value[None].to(device) if torch.is_tensor(value)
        else [value] if isinstance(value, str) else torch.tensor([value], device=device)
        for key, value in sample.items()
    }  # fmt: skip


def train_synthesis(
    config: SynthesisTrainConfig,
    world: World,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Build everything stage 2 needs from ``config`` and run the loop."""
    data = _generated_data(config) if config.generator is not None else _cohort_data(config)
    conditioner = make_conditioner(config, data.target_prompts)
    torch.manual_seed(config.seed)
    model = build(_network_spec(config, conditioner))
    if config.init is not None:
        initial_weights(model, config.init, config.init_network)
    features = _encoder(conditioner, data, pooled=model.pooled_text, device=world.device)
    global_batch = config.batch_size * world.size
    batches = EpochShuffle(len(data.dataset), global_batch, seed=config.seed)

    def predict(network, batch) -> torch.Tensor:
        text, mask = features(batch["prompt"])
        return network(batch["source"], batch["coord"], text, cell=batch["cell"], text_mask=mask)

    def loss(network, batch) -> torch.Tensor:
        return (predict(network, batch) - batch["target"]).abs().mean()

    def validate(network) -> dict[str, float]:
        if data.validation is None:
            return {}
        psnr, baseline = [], []
        for sample in data.validation:
            batch = _batch_of_one(sample, world.device)
            psnr.append(_psnr(predict(network, batch), batch["target"]))
            baseline.append(_psnr(copy_source(batch), batch["target"]))
        return {
            "val_psnr": float(torch.cat(psnr).mean()),
            "val_psnr_copy_source": float(torch.cat(baseline).mean()),
        }

    stage = Stage(
        model=model,
        dataset=data.dataset,
        batches=batches,
        loss=loss,
        validate=validate,
        samples_per_batch=config.batch_size,
        workers=data.workers,
        extra={
            "stage": "synthesis",
            "conditioner": config.conditioner,
            "text_encoder": config.text_encoder,
            "tasks": [list(task) for task in config.tasks],
            "prompts": data.prompts or data.target_prompts,
            "input_normalisation": input_normalisation(config),
        },
        export=lambda network, facts: _pipeline(conditioner, network, facts, data.target_prompts),
    )
    return train(config, stage, world, resume=resume, progress=progress, stop_at=stop_at)
