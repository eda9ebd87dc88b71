"""Optimiser and learning-rate schedule from a training configuration."""

from __future__ import annotations

import math

import torch

from tumsyn.train.config import OptimizerConfig, ScheduleConfig

__all__ = ["make_optimizer", "make_scheduler"]


def make_optimizer(config: OptimizerConfig, parameters) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.name == "adamw" else torch.optim.Adam
    return kind(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)


def lr_factor(config: ScheduleConfig, step: int, total: int) -> float:
    """Multiplier of the base learning rate at ``step`` (0-based) of ``total``."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.kind == "step":
        return config.gamma ** sum(step >= milestone for milestone in config.milestones)
    if config.kind == "cosine":
        span = max(total - config.warmup_steps, 1)
        progress = min((step - config.warmup_steps) / span, 1.0)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.min_lr_fraction + (1.0 - config.min_lr_fraction) * cosine
    return 1.0


def make_scheduler(
    config: ScheduleConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(config, step, total_steps)
    )
