"""Size and cost of every packaged configuration (``tumsyn models``).

Parameters and FLOPs are counted on the meta device (shapes only, no memory, no compute) with
``torch.utils.flop_counter``: a synthesis model on one ``patch^3`` source patch decoded at the same
resolution (encoder, fusion with a 90-token prompt, decoder); a BMLIP model on one image at its
input size plus one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from tumsyn.models.registry import build, list_configs, load_config
from tumsyn.models.synth import fusion_takes_pooled_text

__all__ = ["ConfigSummary", "summarise_configs"]

_CONTEXT = 90


@dataclass(frozen=True)
class ConfigSummary:
    name: str
    stage: str
    parameters: int
    gflops: float
    input: str


def _synth_inputs(model, patch: int):
    args = model.spec["args"]
    text_dim = args["text_dim"]
    points = patch**3
    text = (
        torch.zeros(1, text_dim)
        if fusion_takes_pooled_text(args["fusion"]["kind"])
        else torch.zeros(1, _CONTEXT, text_dim)
    )
    inputs = (torch.zeros(1, 1, patch, patch, patch), torch.zeros(1, points, 3), text)
    return inputs, {"cell": torch.zeros(1, points, 3)}, f"{patch}^3 -> {patch}^3"


def _bmlip_inputs(model, patch: int):
    size = model.spec["args"]["vision"]["input_size"]
    ids = torch.zeros(1, _CONTEXT, dtype=torch.long)
    return (torch.zeros(1, 1, size, size, size), ids), {}, f"{size}^3 image + prompt"


_INPUTS = {"synth": ("stage 2", _synth_inputs), "bmlip": ("stage 1", _bmlip_inputs)}


def summarise(name: str, *, patch: int = 64) -> ConfigSummary:
    family = load_config(name)["name"]
    stage, make_inputs = _INPUTS[family]
    with torch.device("meta"):
        model = build(name)
        parameters = sum(p.numel() for p in model.parameters())
        args, kwargs, description = make_inputs(model, patch)
        with FlopCounterMode(display=False) as counter:
            model(*args, **kwargs)
    return ConfigSummary(name, stage, parameters, counter.get_total_flops() / 1e9, description)


def summarise_configs(*, patch: int = 64) -> list[ConfigSummary]:
    return [summarise(name, patch=patch) for name in list_configs()]
