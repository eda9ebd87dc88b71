"""Models: stage-1 BMLIP and the stage-2 synthesis network, built from configs by one factory.

Example:
    >>> from tumsyn.models import build, list_configs
    >>> model = build("tumsyn-tiny")  # or "official-synth", "tumsyn-base", a YAML path, a spec
"""

from tumsyn.models import synth  # noqa: F401  (registers the "synth" family)
from tumsyn.models.registry import build, list_configs, load_config
from tumsyn.models.synth import SynthConfig, SynthesisNetwork

__all__ = ["SynthConfig", "SynthesisNetwork", "build", "list_configs", "load_config"]
