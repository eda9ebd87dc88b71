"""Stage 1: BMLIP, contrastive pre-training of the text encoder against the image encoder.

Each sample is a whole volume (resampled, cropped to the image tower's input) with its prompt; a
batch holds as many distinct prompts as the data allow, since the loss treats every other sample
of the batch as a negative. Under torchrun each process computes the loss over its own share of
the batch (no all-gather of features).

Validation: image-to-text retrieval accuracy within fixed batches of held-out subjects (top-1,
against chance 1 / batch size) and the validation loss.
"""

from __future__ import annotations

import torch

from tumsyn.data import (
    DistinctPromptBatchSampler,
    VolumeCache,
    WholeVolumes,
)
from tumsyn.distributed import World
from tumsyn.errors import ConfigError
from tumsyn.models import BMLIP, build, contrastive_loss
from tumsyn.text import tokenize
from tumsyn.train.config import ContrastiveTrainConfig
from tumsyn.train.loop import Stage, run_records, train

__all__ = ["train_contrastive"]


def train_contrastive(
    config: ContrastiveTrainConfig,
    world: World,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
):
    records = run_records(config)
    train_records, validation_records = records.train, records.validation
    prompts, prompt_ids = records.prompts, records.prompt_ids
    ids = tokenize(prompts).to(world.device)
    torch.manual_seed(config.seed)
    model = build(config.model)
    if not isinstance(model, BMLIP):
        raise ConfigError(f"model {config.model!r} is not a stage-1 (bmlip) configuration")
    input_size = model.spec["args"]["vision"]["input_size"]
    cache = VolumeCache(config.data.cache)
    volumes = {"input_size": input_size, "spacing": config.spacing}
    dataset = WholeVolumes(
        train_records,
        cache,
        prompt_ids,
        **volumes,
        augmentation=config.prompt_augmentation,
        seed=config.seed,
    )
    batches = DistinctPromptBatchSampler(
        [record.prompt for record in train_records],
        config.batch_size * world.size,
        seed=config.seed,
    )

    def loss(network, batch) -> torch.Tensor:
        tokens = tokenize(batch["text"]).to(world.device) if "text" in batch else None
        image_features, text_features = network(
            batch["image"], ids[batch["prompt"]] if tokens is None else tokens
        )
        scale = network.module.logit_scale if hasattr(network, "module") else network.logit_scale
        return contrastive_loss(image_features, text_features, scale)

    validation_batches = []
    if validation_records:
        held_out = WholeVolumes(validation_records, cache, prompt_ids, **volumes)
        order = DistinctPromptBatchSampler(
            [record.prompt for record in validation_records],
            min(config.batch_size, len(validation_records)),
            seed=config.seed + 1,
        )
        for number, indices in enumerate(order):
            if number == config.validation_batches:
                break
            samples = [held_out[i] for i in indices]
            validation_batches.append(
                (
                    torch.stack([s["image"] for s in samples]),
                    torch.tensor([s["prompt"] for s in samples]),
                )
            )

    def validate(network: BMLIP) -> dict[str, float]:
        if not validation_batches:
            return {}
        losses, hits, total = [], 0, 0
        for images, prompt_index in validation_batches:
            image_features, text_features = network(
                images.to(world.device), ids[prompt_index.to(world.device)]
            )
            losses.append(
                float(contrastive_loss(image_features, text_features, network.logit_scale))
            )
            similarity = image_features @ text_features.T
            same = prompt_index[:, None] == prompt_index[None, :]
            hits += int(same[torch.arange(len(prompt_index)), similarity.argmax(dim=1).cpu()].sum())
            total += len(prompt_index)
        return {"val_loss": sum(losses) / len(losses), "val_top1": hits / total}

    stage = Stage(
        model=model,
        dataset=dataset,
        batches=batches,
        loss=loss,
        validate=validate,
        samples_per_batch=config.batch_size,
        workers=config.data.workers,
        after_step=lambda m: m.clamp_logit_scale_(),
        # The voxel size images were resampled to: retrieval must prepare images the same way.
        extra={"stage": "text", "prompts": prompts, "spacing": config.spacing},
    )
    return train(config, stage, world, resume=resume, progress=progress, stop_at=stop_at)
