"""Training both stages: configs, the shared loop, torchrun support, checkpoints and resume."""

from tumsyn.train.config import ContrastiveTrainConfig, SynthesisTrainConfig, load_train_config

__all__ = ["ContrastiveTrainConfig", "SynthesisTrainConfig", "load_train_config", "run"]


def run(
    config_path,
    stage: str,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
):
    """Train ``stage`` (``text`` or ``synthesis``) from a YAML file; returns a ``TrainResult``."""
    from tumsyn.train import distributed

    config = load_train_config(config_path, stage)
    world = distributed.start(config.device)
    finished = False
    try:
        if stage == "text":
            from tumsyn.train.contrastive import train_contrastive

            result = train_contrastive(
                config, world, resume=resume, progress=progress, stop_at=stop_at
            )
        else:
            from tumsyn.train.synthesis import train_synthesis

            result = train_synthesis(
                config, world, resume=resume, progress=progress, stop_at=stop_at
            )
        finished = True
        return result
    finally:
        distributed.stop(finished=finished)
