"""Training-step speed of the tiny configurations on the CPU.

    .venv/bin/python benchmarks/bench_models.py

Target (models issue): one stage-2 training step of `tumsyn-tiny` on a batch of 2 x 32^3 patches
under one second on 2 CPU cores. A step is forward, L1 loss, backward and an Adam update, with 8000
query points per patch (as the official training) and 90-token prompts. Also times a `bmlip-tiny`
contrastive step on a batch of 8 volumes of 32^3. Prints a table and writes
benchmarks/results/models.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import best_of, report
from tumsyn.models import build, contrastive_loss
from tumsyn.text import tokenize

QUERIES = 8000


def synth_step(model, optimizer, batch: int, size: int):
    image = torch.randn(batch, 1, size, size, size)
    coord = torch.rand(batch, QUERIES, 3) * 2 - 1
    cell = torch.full_like(coord, 2 / size)
    text = torch.randn(batch, 90, model.spec["args"]["text_dim"])
    mask = torch.arange(90)[None].expand(batch, -1) < 40
    target = torch.rand(batch, QUERIES, 1)

    def step() -> None:
        loss = (model(image, coord, text, cell=cell, text_mask=mask) - target).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def bmlip_step(model, optimizer, batch: int):
    size = model.spec["args"]["vision"]["input_size"]
    images = torch.randn(batch, 1, size, size, size)
    ids = tokenize([f"Age: {20 + i}; Gender: F; Modality: T1w" for i in range(batch)])

    def step() -> None:
        image_features, text_features = model(images, ids)
        loss = contrastive_loss(image_features, text_features, model.logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    torch.manual_seed(0)
    rows = []
    synth = build("tumsyn-tiny").train()
    step = synth_step(synth, torch.optim.Adam(synth.parameters(), 1e-4), batch=2, size=32)
    step()  # warm-up
    seconds = best_of(step, repeats=5)
    rows.append(
        {
            "step": "tumsyn-tiny, 2 x 32^3, 8000 queries each",
            "threads": torch.get_num_threads(),
            "seconds": f"{seconds:.3f}",
            "target": "< 1 s: " + ("met" if seconds < 1 else "MISSED"),
        }
    )
    bmlip = build("bmlip-tiny").train()
    step = bmlip_step(bmlip, torch.optim.AdamW(bmlip.parameters(), 1e-4), batch=8)
    step()
    seconds = best_of(step, repeats=5)
    rows.append(
        {
            "step": "bmlip-tiny, 8 x 32^3 + prompts",
            "threads": torch.get_num_threads(),
            "seconds": f"{seconds:.3f}",
            "target": "-",
        }
    )
    report("models", rows)


if __name__ == "__main__":
    main()
