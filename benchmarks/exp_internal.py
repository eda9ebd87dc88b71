"""Internal test: held-out subjects, protocols seen in training (the paper's internal data sets).

    .venv/bin/python benchmarks/exp_internal.py [--suite quick|release|FILE] [--workdir DIR]

The suite's eight tasks (T1w<->T2w, T1w<->FLAIR, T1w->PD, T2w->PD, FLAIR<->T1CE with enhancing
lesions) on the ``internal`` cohort, for the model of every conditioner (tumsyn's BMLIP text
tower, the untrained tower, one-hot, metadata vector, MiniLM sentence embedding) and the
baselines that need no training (copy and intensity-inverted source). Each target image is asked
for with its own prompt (its sidecar's protocol). Writes benchmarks/results/internal.json (per
method, all tasks), internal_tasks.json, internal_cases.json and docs/figures/eval_internal.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import split_experiment


def main(argv: list[str] | None = None) -> dict:
    return split_experiment(argv, split="internal", name="internal", doc=__doc__)


if __name__ == "__main__":
    main()
