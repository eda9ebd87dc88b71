"""How far apart does a text tower put two contrasts' prompts, pooled and token by token?

    .venv/bin/python benchmarks/exp_prompt_separation.py [CHECKPOINT ...]

For the default 3 T protocol of FLAIR against each other modality's (1 mm, no age or sex), the
cosine similarity of the pooled prompt vectors (what stage 1's contrastive loss shapes) and of the
prompts' mean token features (what a per-voxel cross-attention reads, roughly: it averages tokens
with learned weights). Why it exists: model v2's FLAIR comes out like its SWI, and this shows how
close the text tower puts their prompts (docs/decisions.md, "FLAIR is answered as SWI").
CHECKPOINT: pipelines or stage-1 checkpoints (default: the bundled model).
Prints a table and writes benchmarks/results/prompt_separation.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.nn.functional import cosine_similarity

sys.path.insert(0, str(Path(__file__).parent))
from bench_prompt_voxel_size import checkpoint_label, text_tower
from common import report
from tumsyn.infer.loading import bundled_checkpoint_path
from tumsyn.metadata import default_protocol, format_prompt
from tumsyn.metadata.modalities import MODALITIES

REFERENCE = "FLAIR"


def prompt(modality: str) -> str:
    return format_prompt(default_protocol(modality).metadata.replace(voxel_size=(1.0,) * 3))


@torch.no_grad()
def pooled_and_mean_token(tower, modality: str) -> tuple[torch.Tensor, torch.Tensor]:
    text = prompt(modality)
    pooled = tower.features([text], pooled=True)[0][0]
    tokens, mask = tower.features([text], pooled=False)
    return pooled, tokens[0][mask[0]].mean(dim=0)


def main(paths: list[Path]) -> None:
    rows = []
    for path in paths:
        tower = text_tower(path)
        features = {m: pooled_and_mean_token(tower, m) for m in MODALITIES}
        for other in (m for m in MODALITIES if m != REFERENCE):
            (pooled, mean), (pooled_other, mean_other) = features[REFERENCE], features[other]
            rows.append({
                "checkpoint": checkpoint_label(path), "prompts": f"{REFERENCE} vs {other}",
                "pooled cosine": round(float(cosine_similarity(pooled, pooled_other, dim=0)), 3),
                "mean-token cosine": round(float(cosine_similarity(mean, mean_other, dim=0)), 3),
            })  # fmt: skip
    command = "python benchmarks/exp_prompt_separation.py " + " ".join(map(str, paths))
    report("prompt_separation", rows, {"command": command})


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or [bundled_checkpoint_path()])
