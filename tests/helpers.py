"""Helpers shared by tests (importable because pyproject puts tests/ on the path)."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tumsyn.io import Grid
from tumsyn.metadata import ImagingMetadata
from tumsyn.simulate import Anatomy
from tumsyn.simulate.anatomy import template_anatomy
from tumsyn.simulate.tissues import TISSUES

DATA = Path(__file__).parent / "data"

# The FLAIR protocol of the foundation issue's acceptance example, as a record.
ISSUE_FLAIR = ImagingMetadata(
    age=70,
    sex="F",
    field_strength=3,
    manufacturer="Siemens",
    modality="FLAIR",
    voxel_size=(1, 1, 3),
    tr=9000,
    te=81,
    ti=2500,
    flip_angle=150,
)

# A BMLIP far smaller than bmlip-tiny (16^3 input): a few training steps take seconds.
TINY_BMLIP_SPEC = {
    "name": "bmlip",
    "args": {
        "embed_dim": 16,
        "text": {"context_length": 90, "vocab_size": 49408, "width": 16, "layers": 1, "heads": 2},
        "vision": {"kind": "vit", "input_size": 16, "patch_size": 8, "width": 16, "layers": 1,
                   "heads": 2, "mlp_dim": 32},
    },
}  # fmt: skip

# The smallest synthesis network with 16-dimensional text features: fast enough to train and
# synthesize with in tests.
TINY_SYNTH_SPEC = {
    "name": "synth",
    "args": {
        "encoder": {"features": 4, "blocks": 1, "out_channels": 8},
        "fusion": {"kind": "voxel", "heads": 2, "mlp_ratio": 2.0},
        "decoder": {"kind": "liif", "hidden": [16]},
        "text_dim": 16,
    },
}


def oblique_affine(voxel_size=(1.0, 1.5, 2.0), angle_deg: float = 20.0) -> np.ndarray:
    """An affine rotated about z, with anisotropic voxels and a translation."""
    angle = np.deg2rad(angle_deg)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(voxel_size)
    affine[:3, 3] = [-40.0, 12.5, 7.0]
    return affine


def block_anatomy(size: int = 16) -> Anatomy:
    """A toy subject: five slabs of pure tissue along the first axis, one per class, 1 mm voxels.

    A brain of ``size``^3 voxels (slab ``k`` holds class ``k``) inside a zero border of 4 voxels.
    """
    base = template_anatomy()
    shape = (size + 8,) * 3
    fractions = np.zeros((len(TISSUES), *shape), dtype=np.float32)
    edges = np.linspace(4, 4 + size, len(TISSUES) + 1).round().astype(int)
    for k in range(len(TISSUES)):
        fractions[k, edges[k] : edges[k + 1], 4 : 4 + size, 4 : 4 + size] = 1.0
    return Anatomy(parameters=base.parameters, grid=Grid(shape, np.eye(4)), fractions=fractions)


def deterministic_weights(state: dict) -> dict:
    """Reproducible stand-in weights for a state dict: same keys and shapes, same values anywhere.

    Each tensor is drawn from its own ``torch.Generator`` seeded with ``zlib.crc32(key)``, so the
    values depend only on the key and the shape (not on the model class, the key order or the
    global RNG): the official code and tumsyn, filled with this, hold identical weights.

    - weights of two or more dimensions: ``N(0, 1) / sqrt(fan_in)``, ``fan_in = prod(shape[1:])``;
    - other one-dimensional ``*.weight`` (norm scales): ``1 + 0.1 N(0, 1)``;
    - ``*.running_var``: ``1 + 0.1 |N(0, 1)|`` (positive); other 1-D tensors (biases,
      ``running_mean``) and scalars: ``0.1 N(0, 1)``;
    - integer buffers (``num_batches_tracked``) are copied unchanged (zeros for meta tensors).

    Works on a state dict of meta tensors (only shapes and dtypes are read), so a large model can
    be built on the meta device and filled with ``load_state_dict(..., assign=True)``.
    """
    import math
    import zlib

    import torch

    filled = {}
    for key in sorted(state):
        value = state[key]
        if not value.is_floating_point():
            filled[key] = torch.zeros_like(value, device="cpu") if value.is_meta else value.clone()
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        noise = torch.randn(tuple(value.shape), generator=generator, dtype=torch.float64)
        if value.dim() >= 2:
            drawn = noise / math.sqrt(math.prod(value.shape[1:]))
        elif key.endswith("running_var"):
            drawn = 1 + 0.1 * noise.abs()
        elif value.dim() == 1 and key.endswith("weight"):
            drawn = 1 + 0.1 * noise
        else:
            drawn = 0.1 * noise
        filled[key] = drawn.to(value.dtype)
    return filled


def fill_deterministic_(model) -> None:
    """Load :func:`deterministic_weights` into ``model`` (strict: every key; meta models too)."""
    model.load_state_dict(deterministic_weights(model.state_dict()), strict=True, assign=True)


@contextlib.contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """A ``benchmarks/`` script as a module (benchmarks/ is no package; a script imports its
    sibling ``common``).

    What loading it adds to ``sys.modules`` and ``sys.path`` is taken away afterwards, so that
    the benchmark folder shadows nothing in later tests.
    """
    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", list(sys.path))
        spec = importlib.util.spec_from_file_location(name, script)
        module = importlib.util.module_from_spec(spec)
        # dataclasses look the module up while the class is made
        patch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        yield module
        for sibling in ("common", "evaluation", "icbm"):  # imported by their plain names
            sys.modules.pop(sibling, None)


def run_benchmark(name: str, argv: list[str], results: Path, figures: Path | None = None):
    """Run a ``benchmarks/`` script's ``main(argv)`` with its JSON written to ``results`` (and
    the evaluation figures to ``figures``) instead of the repository's folders."""
    with benchmark_module(name) as module, pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys.modules["common"], "RESULTS", results)
        if figures is not None and "evaluation" in sys.modules:
            patch.setattr(sys.modules["evaluation"], "FIGURES", figures)
        return module.main(argv)
