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

import torch
from torch import nn

from tumsyn.data import (
    SynthesisPatches,
    VolumeCache,
    paired_records,
)
from tumsyn.distributed import World
from tumsyn.errors import ConfigError
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.metadata import parse_prompt, prompt_without_subject
from tumsyn.models import BMLIP, build, load_checkpoint, load_config, make_pipeline
from tumsyn.models.conditioners import site_label
from tumsyn.models.liif import sample_grid
from tumsyn.models.pipeline import text_tower_spec
from tumsyn.train.config import SynthesisTrainConfig
from tumsyn.train.loop import Stage, run_records, train
from tumsyn.train.sampling import EpochShuffle

__all__ = ["PromptFeatures", "make_conditioner", "task_pairs", "train_synthesis"]


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
    model = load_checkpoint(checkpoint)
    if not isinstance(model, BMLIP):
        raise ConfigError(f"{checkpoint}: text_encoder must be a stage-1 (BMLIP) checkpoint")
    return model.text_encoder().eval()


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


def train_synthesis(
    config: SynthesisTrainConfig,
    world: World,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Build everything stage 2 needs from ``config`` and run the loop."""
    records = run_records(config)
    train_records, validation_records = records.train, records.validation
    train_pairs, validation_pairs = (
        paired_records(train_records),
        paired_records(validation_records),
    )
    train_pairs = task_pairs(train_pairs, config.tasks)
    validation_pairs = task_pairs(validation_pairs, config.tasks)
    if not train_pairs:
        raise ConfigError(
            f"{config.data.source}: no subject has two images to pair"
            + (f" for the tasks {list(config.tasks)}" if config.tasks else "")
        )
    prompts, prompt_ids = records.prompts, records.prompt_ids
    if config.subject_dropout > 0:  # the prompts without age and sex get features too
        prompts = sorted({*prompts, *(prompt_without_subject(p) for p in prompts)})
        prompt_ids = {prompt: index for index, prompt in enumerate(prompts)}
    target_prompts = sorted({target.prompt for _, target in train_pairs})
    conditioner = make_conditioner(config, target_prompts)
    torch.manual_seed(config.seed)
    model = build(_network_spec(config, conditioner))
    features = PromptFeatures(conditioner, prompts, pooled=model.pooled_text).to(world.device)
    cache = VolumeCache(config.data.cache)
    patch_settings = {
        "patch_size": config.patch_size,
        "queries": config.queries,
        "scale_range": config.scale_range,
        "anisotropic": config.anisotropic,
    }
    dataset = SynthesisPatches(
        train_pairs,
        cache,
        prompt_ids,
        seed=config.seed,
        subject_dropout=config.subject_dropout,
        **patch_settings,
    )
    global_batch = config.batch_size * world.size
    batches = EpochShuffle(len(dataset), global_batch, seed=config.seed)

    def loss(network, batch) -> torch.Tensor:
        text, mask = features(batch["prompt"])
        prediction = network(
            batch["source"], batch["coord"], text, cell=batch["cell"], text_mask=mask
        )
        return (prediction - batch["target"]).abs().mean()

    validation = None
    if validation_pairs:
        held_out = SynthesisPatches(  # pairs reused with new patches when there are fewer
            validation_pairs, cache, prompt_ids, seed=config.seed + 1,
            length=config.validation_patches, **patch_settings,
        )  # fmt: skip
        validation = [held_out[i] for i in range(config.validation_patches)]

    def validate(network) -> dict[str, float]:
        if validation is None:
            return {}
        psnr, baseline = [], []
        for sample in validation:
            batch = {k: v[None].to(world.device) if torch.is_tensor(v) else torch.tensor([v])
                     for k, v in sample.items()}  # fmt: skip
            batch["prompt"] = batch["prompt"].to(world.device)
            text, mask = features(batch["prompt"])
            prediction = network(
                batch["source"], batch["coord"], text, cell=batch["cell"], text_mask=mask
            )
            psnr.append(_psnr(prediction, batch["target"]))
            baseline.append(_psnr(copy_source(batch), batch["target"]))
        return {
            "val_psnr": float(torch.cat(psnr).mean()),
            "val_psnr_copy_source": float(torch.cat(baseline).mean()),
        }

    stage = Stage(
        model=model,
        dataset=dataset,
        batches=batches,
        loss=loss,
        validate=validate,
        samples_per_batch=config.batch_size,
        extra={
            "stage": "synthesis",
            "conditioner": config.conditioner,
            "text_encoder": config.text_encoder,
            "tasks": [list(task) for task in config.tasks],
            "prompts": prompts,
        },
        export=lambda network, facts: _pipeline(conditioner, network, facts, target_prompts),
    )
    return train(config, stage, world, resume=resume, progress=progress, stop_at=stop_at)
