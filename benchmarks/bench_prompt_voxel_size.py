"""Does a text tower read the voxel size as irrelevant to the contrast?

    .venv/bin/python benchmarks/bench_prompt_voxel_size.py [CHECKPOINT ...]

For each modality's default protocol (prompt without age and sex, as the API writes one for an
unknown subject), the cosine similarity of the pooled text features at 0.8, 1 and 3 mm to the same
prompt at 2 mm, and the highest similarity of the 1 mm prompt to another modality's 2 mm prompt.
A tower that confuses voxel size with contrast shows a low "same" and a high "nearest other".
CHECKPOINT: pipelines or stage-1 checkpoints (default: the bundled model). Prints a table and
writes benchmarks/results/prompt_voxel_size.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import report
from tumsyn.infer.loading import bundled_checkpoint_path
from tumsyn.metadata import default_protocol, format_prompt
from tumsyn.metadata.modalities import MODALITIES
from tumsyn.models import load_checkpoint


def text_tower(path: Path):
    model = load_checkpoint(path)
    return model.text if hasattr(model, "text") else model.text_encoder()


def checkpoint_label(path: Path) -> str:
    """A run folder's name for its ``model.safetensors``, else the file's name."""
    return path.parent.name if path.name == "model.safetensors" else path.name


def embedding(tower, modality: str, size: float) -> torch.Tensor:
    metadata = default_protocol(modality).metadata.replace(voxel_size=(size,) * 3)
    with torch.no_grad():
        features = tower.features([format_prompt(metadata)], pooled=True)[0]
    return torch.nn.functional.normalize(features.flatten(), dim=0)


def main(paths: list[Path]) -> None:
    rows = []
    for path in paths:
        tower = text_tower(path)
        at = {(m, s): embedding(tower, m, s) for m in MODALITIES for s in (0.8, 1.0, 2.0, 3.0)}
        for m in MODALITIES:
            same = {s: float(at[(m, s)] @ at[(m, 2.0)]) for s in (0.8, 1.0, 3.0)}
            other = max(float(at[(m, 1.0)] @ at[(o, 2.0)]) for o in MODALITIES if o != m)
            rows.append({
                "checkpoint": checkpoint_label(path), "modality": m,
                "same_0.8": round(same[0.8], 3), "same_1": round(same[1.0], 3),
                "same_3": round(same[3.0], 3), "nearest_other_1": round(other, 3),
            })  # fmt: skip
    command = "python benchmarks/bench_prompt_voxel_size.py " + " ".join(map(str, paths))
    report("prompt_voxel_size", rows, {"command": command})


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]] or [bundled_checkpoint_path()])
