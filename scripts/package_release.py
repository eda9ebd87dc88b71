"""Bundle the trained stages into the shipped checkpoint (text tower + synthesis network, fp16).

    .venv/bin/python scripts/package_release.py NAME STAGE1 STAGE2 OUT
    (scripts/train_release.sh: tumsyn-v2 runs/bmlip-v2/model.safetensors
     runs/synth-v2/model.safetensors runs/tumsyn-v2.safetensors)

Records the training coverage (from the stage-2 run's prompts), the validation metrics and the
training steps in the file's metadata.
"""

from __future__ import annotations

import sys

import torch

from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.models import load_checkpoint, make_pipeline, save_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata


def main(name: str, stage1: str, stage2: str, out: str) -> None:
    text_encoder = load_checkpoint(stage1).text_encoder()
    synth = load_checkpoint(stage2)
    first, second = (
        read_checkpoint_metadata(stage1)["extra"],
        read_checkpoint_metadata(stage2)["extra"],
    )
    pipeline = make_pipeline(text_encoder, synth)
    extra = {
        "name": name,
        "coverage": coverage_from_prompts(second["prompts"]),
        "stage1": {"steps": first["step"], "metrics": first["metrics"]},
        "stage2": {"steps": second["step"], "metrics": second["metrics"]},
        "training_data": "simulated only (tumsyn simulate, scripts/train_release.sh)",
    }
    path = save_checkpoint(out, pipeline, extra=extra, dtype=torch.float16)
    print(f"wrote {path}")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
