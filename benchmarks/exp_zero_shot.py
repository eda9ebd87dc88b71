"""Zero-shot test: held-out subjects AND protocols never seen in training.

    .venv/bin/python benchmarks/exp_zero_shot.py [--suite quick|release|FILE] [--workdir DIR]

The ``zero-shot`` cohort is scanned with the library's unseen protocols (every 7 T protocol and
every GE protocol) and with off-grid variants of seen protocols (TR/TE/TI 1.2 times beyond the
largest seen; ``tumsyn.evaluate.cohort``). Same tasks, models and baselines as
exp_internal.py. Writes benchmarks/results/zero_shot.json, zero_shot_tasks.json,
zero_shot_cases.json and docs/figures/eval_zero_shot.png.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import split_experiment


def main(argv: list[str] | None = None) -> dict:
    return split_experiment(argv, split="zero-shot", name="zero_shot", doc=__doc__)


if __name__ == "__main__":
    main()
