"""Training both stages: configs, the shared loop, torchrun support, checkpoints and resume."""

from tumsyn.train.config import ContrastiveTrainConfig, SynthesisTrainConfig, load_train_config

__all__ = ["ContrastiveTrainConfig", "SynthesisTrainConfig", "load_train_config", "run"]


def run(config_path, stage: str, *, resume: bool = False, progress: bool = True):
    """Train ``stage`` (``text`` or ``synthesis``) from a YAML file; returns the run folder."""
    from tumsyn.train import distributed

    config = load_train_config(config_path, stage)
    world = distributed.start(config.device)
    try:
        if stage == "text":
            from tumsyn.train.contrastive import train_contrastive

            return train_contrastive(config, world, resume=resume, progress=progress)
        from tumsyn.train.synthesis import train_synthesis

        return train_synthesis(config, world, resume=resume, progress=progress)
    finally:
        distributed.stop()
