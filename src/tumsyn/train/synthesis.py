"""Stage 2: train the synthesis network on pairs of co-registered images, text from stage 1.

The stage-1 checkpoint's text tower is frozen and run once per distinct prompt before training
(the data set has a few dozen protocols, the loop thousands of steps). Its output is what the
fusion block expects: the pooled vector for the official block, every token up to the end token
for tumsyn's per-voxel cross-attention.

Every ordered pair (A, B) of a subject's images is a sample, so both directions (A -> B and
B -> A) are trained with the same weights, as the official code does in one step.

Validation: fixed patches of held-out subjects; PSNR of the prediction and of the copy-source
baseline (the low-resolution source interpolated at the query points) on the [0, 1] intensities.
"""

from __future__ import annotations

import torch

from tumsyn.data import (
    SynthesisPatches,
    VolumeCache,
    paired_records,
)
from tumsyn.distributed import World
from tumsyn.errors import ConfigError
from tumsyn.metadata import prompt_without_subject
from tumsyn.models import BMLIP, SynthesisNetwork, build, load_checkpoint
from tumsyn.models.liif import sample_grid
from tumsyn.models.synth import fusion_takes_pooled_text
from tumsyn.text import tokenize
from tumsyn.train.config import SynthesisTrainConfig
from tumsyn.train.loop import Stage, run_records, train
from tumsyn.train.sampling import EpochShuffle

__all__ = ["PromptFeatures", "train_synthesis"]


class PromptFeatures:
    """Frozen text features of a fixed list of prompts, looked up by prompt index."""

    def __init__(self, checkpoint: str, prompts: list[str], *, pooled: bool, text_dim: int) -> None:
        model = load_checkpoint(checkpoint)
        if not isinstance(model, BMLIP):
            raise ConfigError(f"{checkpoint}: text_encoder must be a stage-1 (BMLIP) checkpoint")
        encoder = model.text_encoder().eval()
        if encoder.embed_dim != text_dim:
            raise ConfigError(
                f"{checkpoint}: its text features have {encoder.embed_dim} dimensions, the "
                f"synthesis model expects text_dim {text_dim}"
            )
        ids = tokenize(prompts)
        with torch.no_grad():
            if pooled:
                self.tokens, self.mask = encoder(ids), None
            else:
                self.tokens, self.mask = encoder.prompt_tokens(ids)

    def to(self, device: torch.device) -> PromptFeatures:
        self.tokens = self.tokens.to(device)
        self.mask = None if self.mask is None else self.mask.to(device)
        return self

    def __call__(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.tokens[index], None if self.mask is None else self.mask[index]


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
    if not train_pairs:
        raise ConfigError(f"{config.data.source}: no subject has two images to pair")
    prompts, prompt_ids = records.prompts, records.prompt_ids
    if config.subject_dropout > 0:  # the prompts without age and sex get features too
        prompts = sorted({*prompts, *(prompt_without_subject(p) for p in prompts)})
        prompt_ids = {prompt: index for index, prompt in enumerate(prompts)}
    torch.manual_seed(config.seed)
    model = build(config.model)
    if not isinstance(model, SynthesisNetwork):
        raise ConfigError(f"model {config.model!r} is not a synthesis (stage 2) configuration")
    spec = model.spec["args"]
    features = PromptFeatures(
        config.text_encoder,
        prompts,
        pooled=fusion_takes_pooled_text(spec["fusion"]["kind"]),
        text_dim=spec["text_dim"],
    ).to(world.device)
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
        held_out = SynthesisPatches(
            validation_pairs, cache, prompt_ids, seed=config.seed + 1, **patch_settings
        )
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
        extra={"stage": "synthesis", "text_encoder": str(config.text_encoder), "prompts": prompts},
    )
    return train(config, stage, world, resume=resume, progress=progress, stop_at=stop_at)
