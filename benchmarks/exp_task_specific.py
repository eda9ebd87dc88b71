"""One model for every task vs a model per task (the paper's SC-GAN comparison).

    .venv/bin/python benchmarks/exp_task_specific.py [--suite quick|release|FILE] [--workdir DIR]

For each of the suite's ``task_specific`` tasks, the same network and recipe trained only on
that task's pairs is compared with the universal model (BMLIP text, every task) on that task's
cases of the ``internal`` cohort, next to the copy-source baseline: "one model matches
task-specific models" is measured, not assumed. Writes benchmarks/results/task_specific.json,
task_specific_cases.json and docs/figures/eval_task_specific.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import (
    CONDITIONER_METHODS,
    add_suite_arguments,
    model_methods,
    plot_metric,
    prepared_suite,
    write_results,
)
from tumsyn.evaluate.experiments import BASELINES, evaluate_cases, summarise, task_cases


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_suite_arguments(parser)
    args = parser.parse_args(argv)
    suite, models, workdir = prepared_suite(args)
    patch_size = suite.evaluation.patch_size
    universal = model_methods({"bmlip": models.conditioners["bmlip"]}, workdir, patch_size,
                              CONDITIONER_METHODS)  # fmt: skip
    rows = []
    for task in suite.task_specific:
        name = f"{task[0]}->{task[1]}"
        specific = model_methods({name: models.task_specific[name]}, workdir, patch_size,
                                 {name: "task-specific"})  # fmt: skip
        cases = task_cases(models.cohorts["internal"], [task], suite.evaluation.max_cases)
        methods = {**universal, **specific, "copy source": BASELINES["copy source"]}
        rows += evaluate_cases(cases, methods, slices=suite.evaluation.slices,
                               progress=not args.quiet)  # fmt: skip
    metrics = ("psnr", "ssim", "mae")
    summary = summarise(rows, by=("task", "method"), metrics=metrics, seed=suite.evaluation.seed,
                        overall=None)  # fmt: skip
    caption = ("internal split: the universal model vs the same network trained on one task; "
               "mean [bootstrap 95 % interval]")  # fmt: skip
    write_results("task_specific_cases", rows, args, caption, experiment="task_specific")
    write_results("task_specific", summary, args, caption, experiment="task_specific")
    plot_metric(summary, "psnr", "task_specific", "universal vs task-specific")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
