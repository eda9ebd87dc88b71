"""Models: stage-1 BMLIP and the stage-2 synthesis network, built from configs by one factory.

Example:
    >>> from tumsyn.models import build, list_configs
    >>> model = build("tumsyn-tiny")  # or "official-synth", "tumsyn-base", a YAML path, a spec
"""

from tumsyn.models import (  # noqa: F401  (register the model families)
    bmlip,
    conditioners,
    pipeline,
    routed,
    synth,
)
from tumsyn.models.bmlip import BMLIP, BMLIPConfig, contrastive_loss
from tumsyn.models.checkpoint import load_checkpoint, save_checkpoint
from tumsyn.models.official import convert_official, load_official
from tumsyn.models.pipeline import SynthesisPipeline, make_pipeline
from tumsyn.models.registry import build, list_configs, load_config
from tumsyn.models.routed import RoutedNetwork
from tumsyn.models.synth import SynthConfig, SynthesisNetwork
from tumsyn.models.text_encoder import TextEncoder

__all__ = [
    "BMLIP",
    "BMLIPConfig",
    "RoutedNetwork",
    "SynthConfig",
    "SynthesisNetwork",
    "SynthesisPipeline",
    "TextEncoder",
    "build",
    "contrastive_loss",
    "convert_official",
    "list_configs",
    "load_checkpoint",
    "load_config",
    "load_official",
    "make_pipeline",
    "save_checkpoint",
]
