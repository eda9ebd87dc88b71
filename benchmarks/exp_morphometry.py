"""Downstream morphometry: tissue segmentation of synthesized vs acquired T1w images.

    .venv/bin/python benchmarks/exp_morphometry.py [--suite quick|release|FILE] [--workdir DIR]

The paper segments synthesized images with SynthSeg+/FreeSurfer; neither installs offline from a
package registry, so tumsyn uses ANTsPy's Atropos (k-means-initialised 3-class segmentation with
an MRF prior; ``tumsyn.evaluate.morphometry``). For every suite task whose target is a T1w, the
truth and each model's synthesis (every conditioner) are segmented into CSF, GM and WM inside the
brain mask of the ``internal`` cohort's cases; reported per model: Dice per tissue, tissue
volume differences (%) and the Pearson correlation of 24 regional volumes (3 tissues x 8
octants of the brain). Writes benchmarks/results/morphometry.json, morphometry_cases.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from evaluation import (
    CONDITIONER_METHODS,
    add_suite_arguments,
    model_methods,
    prepared_suite,
    write_results,
)
from tumsyn.errors import ImageError
from tumsyn.evaluate.experiments import load_case, summarise, task_cases, task_name
from tumsyn.evaluate.morphometry import compare_segmentations, segment_tissues

TISSUES = ("CSF", "GM", "WM")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_suite_arguments(parser)
    args = parser.parse_args(argv)
    suite, models, workdir = prepared_suite(args)
    methods = model_methods(
        models.conditioners, workdir, suite.evaluation.patch_size, CONDITIONER_METHODS
    )
    tasks = [task for task in suite.tasks if task[1] == "T1w"]
    cases = task_cases(models.cohorts["internal"], tasks, suite.evaluation.max_cases)
    rows = []
    for case in cases:
        data = load_case(case, suite.evaluation.slices)
        spacing = tuple(float(v) for v in data.source.header.get_zooms()[:3])
        voxel_ml = float(np.prod(spacing)) / 1000.0
        truth = segment_tissues(data.truth, data.mask, "T1w", spacing=spacing)
        for name, method in methods.items():
            try:
                labels = segment_tissues(method(data), data.mask, "T1w", spacing=spacing)
            except ImageError:  # a constant synthesis: nothing to segment, Dice 0
                labels = np.zeros_like(truth)
            rows.append({"task": task_name(case.task), "method": name, "case": case.name,
                         **compare_segmentations(labels, truth, data.mask, voxel_ml)})  # fmt: skip
    metrics = (
        *(f"dice_{t}" for t in TISSUES),
        *(f"volume_difference_{t}_percent" for t in TISSUES),
        "regional_volume_r",
    )
    summary = summarise(rows, by=("method",), metrics=metrics, seed=suite.evaluation.seed,
                        overall=None)  # fmt: skip
    caption = (
        f"Atropos CSF/GM/WM of synthesized vs acquired T1w ({len(cases)} internal cases "
        f"of {', '.join(task_name(t) for t in tasks)}); mean [bootstrap 95 % interval]"
    )
    write_results("morphometry_cases", rows, args, caption, experiment="morphometry")
    write_results("morphometry", summary, args, caption, experiment="morphometry")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    main()
