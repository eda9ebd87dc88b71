"""Stage-1 retrieval on held-out subjects (the paper's Supplementary Fig. 1, as numbers).

    .venv/bin/python benchmarks/exp_retrieval.py [--suite quick|release|FILE] [--workdir DIR]

The suite's stage-1 model ranks, for every image of the ``internal`` (seen protocols) and the
``zero-shot`` cohort (unseen protocols), its own prompt among 10 (9 others of the same cohort,
seeded) and its modality among the seven default protocols' prompts; chance beside each
(``tumsyn.evaluate.retrieval.retrieval_scores``). Writes benchmarks/results/retrieval_suite.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import add_suite_arguments, prepared_suite, write_results
from tumsyn.data import load_index
from tumsyn.evaluate.retrieval import load_bmlip, recorded_spacing, retrieval_scores


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_suite_arguments(parser)
    args = parser.parse_args(argv)
    suite, models, workdir = prepared_suite(args)
    model = load_bmlip(models.stage1)
    rows = []
    for split in ("internal", "zero-shot"):
        scores = retrieval_scores(
            model,
            load_index(models.cohorts[split]),
            seed=suite.evaluation.seed,
            spacing=recorded_spacing(models.stage1),
            cache=workdir / "retrieval-cache",
        )
        rows += [{"split": split, **row} for row in scores.rows()]
    caption = "stage-1 top-1 retrieval on held-out subjects, chance beside"
    write_results("retrieval_suite", rows, args, caption, experiment="retrieval")
    return rows


if __name__ == "__main__":
    main()
