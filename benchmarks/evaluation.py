"""What the evaluation-suite experiments share: the suite's models, methods, results, figures.

Each ``exp_*.py`` script takes ``--suite quick|release|PATH`` and a work folder (default
``runs/eval-SUITE``); the models are made once (:func:`tumsyn.evaluate.suite.prepare_models`,
cached and resumable) and shared by every experiment of that suite.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

from common import report
from tumsyn.evaluate.experiments import BASELINES, Method, model_method
from tumsyn.evaluate.suite import SuiteConfig, SuiteModels, load_suite, prepare_models

ROOT = Path(__file__).resolve().parents[1]
SUITES = Path(__file__).parent / "suites"
FIGURES = ROOT / "docs" / "figures"
#: How tables name each conditioner's model.
CONDITIONER_METHODS = {
    "bmlip": "tumsyn (BMLIP text)",
    "untrained": "untrained text tower",
    "onehot": "one-hot",
    "metadata": "metadata vector",
    "sentence": "MiniLM sentence",
}
#: The command that regenerates a suite's results, as the README tables cite it.
SUITE_COMMANDS = {"quick": "make eval-quick", "release": "make eval"}


def working_voxel_size(coverage: dict, preferred: float = 2.0) -> float:
    """The voxel size an experiment synthesizes at: the model's one training voxel size, or for
    a model trained on a range of them the ``preferred`` size brought into that range, so that
    no experiment mixes in a resolution extrapolation it does not mean to measure."""
    low, high = coverage["voxel_size"]
    return float(low) if low == high else float(min(max(preferred, low), high))


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--suite", default="quick", help="quick, release, or a suite YAML file (default: quick)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="cohorts, runs and predictions (default: runs/eval-SUITE)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")  # fmt: skip


def suite_name(args: argparse.Namespace) -> str:
    path = Path(args.suite)
    return path.stem if path.suffix in (".yaml", ".yml") else args.suite


def prepared_suite(args: argparse.Namespace) -> tuple[SuiteConfig, SuiteModels, Path]:
    """The suite the arguments name, its models made (or reused), and its work folder."""
    path = Path(args.suite)
    if path.suffix not in (".yaml", ".yml"):
        path = SUITES / f"{args.suite}.yaml"
    suite = load_suite(path)
    workdir = args.workdir or ROOT / "runs" / f"eval-{suite_name(args)}"
    return suite, prepare_models(suite, workdir, progress=not args.quiet), workdir


def model_methods(models: dict[str, Path], workdir: Path, patch_size: int,
                  names: dict[str, str] | None = None) -> dict[str, Method]:  # fmt: skip
    """A synthesis method per model (named ``names[key]``, else the key), its predictions cached
    under ``workdir/predictions/KEY`` (two runs' checkpoints are both model.safetensors, so the
    key, not the file name, tells them apart)."""
    return {
        (names or {}).get(key, key): model_method(
            path, workdir / "predictions" / re.sub(r"[^\w.-]+", "-", key), patch_size
        )
        for key, path in models.items()
    }


def conditioner_and_baseline_methods(
    suite: SuiteConfig, models: SuiteModels, workdir: Path
) -> dict[str, Method]:
    return {
        **model_methods(
            models.conditioners, workdir, suite.evaluation.patch_size, CONDITIONER_METHODS
        ),
        **BASELINES,
    }


def write_results(
    name: str,
    rows: list[dict],
    args: argparse.Namespace,
    caption: str,
    *,
    experiment: str,
    command: str | None = None,
) -> Path:
    """``results/NAME.json`` with the command that regenerates it (``command`` where given,
    else ``make eval-quick`` for the quick suite, ``make eval`` for release, else
    ``benchmarks/exp_EXPERIMENT.py``), the suite and a caption."""
    if getattr(args, "data", None) is not None:
        suite, script = "your data", f"python benchmarks/exp_{experiment}.py --data {args.data}"
    else:
        suite = suite_name(args)
        script = f"python benchmarks/exp_{experiment}.py --suite {args.suite}"
        script = SUITE_COMMANDS.get(suite, script)
    command = command or script
    if getattr(args, "erode", 0):
        command += f" (scored with --erode {args.erode})"
    return report(name, rows, {"command": command, "suite": suite, "caption": caption})


def _error_bar(row: dict | None, metric: str, side: str) -> float:
    """The distance from a bar's mean to its interval's ``side`` end (0 without an interval:
    a missing row, metric or interval, as one case has none)."""
    if row is None or row[metric] is None or row[f"{metric}_{side}"] is None:
        return 0.0
    return abs(row[f"{metric}_{side}"] - row[metric])


def plot_metric(summary: list[dict], metric: str, name: str, title: str) -> Path:
    """Grouped bars of ``metric`` (mean and bootstrap interval) per task and method, written
    to ``docs/figures/eval_NAME.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(dict.fromkeys(row["task"] for row in summary))
    methods = list(dict.fromkeys(row["method"] for row in summary))
    width = 0.8 / len(methods)
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) + 2), 3.6), dpi=110)
    for index, method in enumerate(methods):
        rows = {row["task"]: row for row in summary if row["method"] == method}
        values = [rows[t][metric] if t in rows and rows[t][metric] is not None else np.nan
                  for t in tasks]  # fmt: skip
        low = [_error_bar(rows.get(t), metric, "low") for t in tasks]
        high = [_error_bar(rows.get(t), metric, "high") for t in tasks]
        positions = np.arange(len(tasks)) + (index - (len(methods) - 1) / 2) * width
        axes.bar(positions, values, width, yerr=[low, high], label=method, capsize=2)
    axes.set_xticks(np.arange(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    axes.set_ylabel(metric.upper())
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    path = FIGURES / f"eval_{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    print(f"figure: {path}")
    return path


#: The paper's eight tasks: what ``--data`` evaluates unless ``--tasks`` says otherwise.
PAPER_TASKS = (("T1w", "T2w"), ("T2w", "T1w"), ("T1w", "FLAIR"), ("FLAIR", "T1w"), ("T1w", "PD"),
               ("T2w", "PD"), ("FLAIR", "T1CE"), ("T1CE", "FLAIR"))  # fmt: skip


def given_own_data(argv: list[str] | None) -> bool:
    """Whether the command line names a user's data set (``--data``), read as the experiment's
    own parser reads it (abbreviations included): experiments that run several splits of a
    suite run a user's data set, which has no splits, once."""
    parser = argparse.ArgumentParser(add_help=False)
    add_own_data_arguments(parser)
    known, _ = parser.parse_known_args(argv)
    return known.data is not None


def add_own_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="your BIDS data set (each subject's images co-registered on one "
        "grid, sidecars with the protocol) instead of the suite's cohort",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME=CHECKPOINT",
        help="a pipeline to evaluate (repeatable): with --data, instead of the bundled model; "
        "with a suite, beside the suite's own models (e.g. a shipped checkpoint)",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="SOURCE:TARGET",
        help="tasks such as T1w:T2w (default: the experiment's; with --data the paper's "
        "eight unless the experiment has its own)",
    )
    parser.add_argument("--patch-size", type=int, default=32, help="with --data (default 32)")


def given_tasks(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    """``--tasks SOURCE:TARGET ...`` as (source, target) pairs of canonical modality names
    (``T2starw:T1w`` -> ``("T2star", "T1w")``), or None where not given."""
    from tumsyn.metadata import canonical_modality

    if not args.tasks:
        return None
    pairs = [task.split(":", 1) for task in args.tasks]
    return [(canonical_modality(source), canonical_modality(target)) for source, target in pairs]


def _own_data(
    args: argparse.Namespace, default_tasks: Sequence[tuple[str, str]]
) -> tuple[list, dict[str, Method], int, int]:
    """Cases and methods for ``--data``: the given pipelines and the baselines."""
    from tumsyn.evaluate.experiments import task_cases
    from tumsyn.infer.loading import BUNDLED_CHECKPOINT, bundled_checkpoint_path

    models = given_models(args) or {f"{BUNDLED_CHECKPOINT} (bundled)": bundled_checkpoint_path()}
    tasks = given_tasks(args) or list(default_tasks)
    workdir = args.workdir or ROOT / "runs" / "eval-own-data"
    methods = model_methods(models, workdir, args.patch_size)
    return task_cases(args.data, tasks), {**methods, **BASELINES}, len(tasks), 0


def given_models(args: argparse.Namespace) -> dict[str, Path]:
    """``--model NAME=CHECKPOINT`` arguments as a mapping."""
    return {name: Path(path) for name, path in (item.split("=", 1) for item in args.model or [])}


def split_experiment(
    argv: list[str] | None,
    *,
    split: str,
    name: str,
    doc: str,
    tasks: Sequence[tuple[str, str]] | None = None,
    slices: int | None = None,
    command: str | None = None,
) -> dict:
    """Every conditioner's model and every baseline on every task of one held-out split:
    per-case rows (``NAME_cases.json``), per task (``NAME_tasks.json``), per input modality
    (``NAME_inputs.json``: how each method reads inputs of one contrast, e.g. one that no network
    was trained on), overall (``NAME.json``) and a figure (``docs/figures/eval_NAME.png``).
    With ``--data``, the same on a user's BIDS data set, for the given pipelines, written as
    ``NAME_own_data*.json``. ``tasks``: the experiment's own (default: the suite's, or with
    ``--data`` the paper's eight); ``--tasks`` overrides either. ``slices``: the experiment's
    evaluated slab (default: the suite's; 0: whole volumes); ``--slices`` overrides it.
    ``command``: what regenerates the results, where the script's own command line does not
    (one that makes its data set first)."""
    from tumsyn.evaluate.experiments import evaluate_cases, summarise, task_cases

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    add_suite_arguments(parser)
    add_own_data_arguments(parser)
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        help="with a suite: the central axial slices evaluated (default: the suite's; 0: whole "
        "volumes)",
    )
    parser.add_argument(
        "--erode",
        type=int,
        default=0,
        metavar="N",
        help="score only voxels N voxels inside each brain mask, written as NAME_erodeN*.json "
        "(default 0; see `tumsyn evaluate --erode`)",
    )
    args = parser.parse_args(argv)
    if args.erode < 0:
        parser.error(f"--erode {args.erode}: give 0 or more voxels")
    experiment = name
    if args.data is not None:
        cases, methods, task_count, slices = _own_data(args, tasks or PAPER_TASKS)
        name, seed, where = f"{name}_own_data", 0, f"{args.data.name}"
    else:
        suite, models, workdir = prepared_suite(args)
        methods = conditioner_and_baseline_methods(suite, models, workdir)
        methods |= model_methods(given_models(args), workdir, suite.evaluation.patch_size)
        chosen = given_tasks(args) or tasks or suite.tasks
        cases = task_cases(models.cohorts[split], chosen, suite.evaluation.max_cases)
        given = (args.slices, slices, suite.evaluation.slices)  # the first that is set wins
        slices = next(n for n in given if n is not None)
        task_count = len(chosen)
        seed, where = suite.evaluation.seed, f"{split} split"
    rows = evaluate_cases(cases, methods, slices=slices, erode=args.erode, progress=not args.quiet)
    if args.erode:
        name, where = f"{name}_erode{args.erode}", f"{where}, masks eroded by {args.erode} voxels"
    metrics = ("psnr", "ssim", "mae", "gm_wm_error", "csf_wm_error", "lesion_wm_error")
    summary = summarise(rows, by=("task", "method"), metrics=metrics, seed=seed)
    per_task = [row for row in summary if row["task"] != "all tasks"]
    per_input = summarise(rows, by=("input", "method"), metrics=metrics, seed=seed, overall=None)
    overall = [{k: v for k, v in row.items() if k != "task"} for row in summary
               if row["task"] == "all tasks"]  # fmt: skip
    subjects = len({row["subject"] for row in rows})
    caption = (f"{where}: {len(cases)} cases of {task_count} tasks, {subjects} held-out "
               "subjects; mean [bootstrap 95 % interval]")  # fmt: skip
    for suffix, content in (
        ("_cases", rows),
        ("_tasks", per_task),
        ("_inputs", per_input),
        ("", overall),
    ):
        write_results(
            f"{name}{suffix}", content, args, caption, experiment=experiment, command=command
        )
    plot_metric(per_task, "psnr", name, f"{where}: PSNR")
    return {"rows": rows, "summary": summary}
