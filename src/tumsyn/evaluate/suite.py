"""The evaluation suite's models: every checkpoint the paper's experiments compare, trained once.

A suite file (``benchmarks/suites/quick.yaml``, ``release.yaml``) says how large the simulated
cohorts are and how each model trains; :func:`prepare_models` makes them in a work folder,
cached by stage:

1. the cohorts (:func:`tumsyn.evaluate.cohort.simulate_cohorts`): train, internal, zero-shot
   (with ``generator`` in ``stage2``, stage 2 draws its samples from virtual subjects instead of
   the train cohort: the recipe of model v2; the test cohorts stay the same);
2. stage 1 (``runs/stage1``) on the train cohort;
3. one stage-2 model per conditioner (``runs/<conditioner>``), all with the same network, data,
   steps and seed, so that they differ only in how the prompt is encoded;
4. one task-specific model per ``task_specific`` entry (``runs/task-<source>-<target>``): the
   bmlip model's recipe trained only on that task's pairs (the paper's SC-GAN role; with the
   same source and target modality, the resolution-only model of the ArSSR role).

Every run is an ordinary ``tumsyn train`` / ``train-text`` run with its YAML file beside it, so
it can be inspected or continued by hand. A finished run is reused; an interrupted one resumes
(``--resume``, exact), so ``make eval`` can be stopped and started again at any point.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import NonNegativeInt, PositiveInt, ValidationError, field_validator

from tumsyn.config import StrictConfig, validation_message
from tumsyn.errors import ConfigError
from tumsyn.evaluate.cohort import CohortPlan, simulate_cohorts
from tumsyn.evaluate.experiments import task_name
from tumsyn.io import atomic_output
from tumsyn.metadata import canonical_modality
from tumsyn.models.conditioners import CONDITIONERS
from tumsyn.yamlfiles import read_yaml

__all__ = ["SuiteConfig", "SuiteModels", "load_suite", "prepare_models"]

Task = tuple[str, str]


#: The paper's SSIM window (Gaussian, sigma 1.5) spans 11 voxels: no thinner slab can be scored.
MIN_SLICES = 11


class EvaluationSettings(StrictConfig):
    slices: NonNegativeInt = 0  # central axial slab of this many slices per case (0: whole)
    patch_size: PositiveInt = 32  # synthesis patch edge (voxels)
    max_cases: NonNegativeInt = 0  # per task and split, at most this many cases (0: all)
    seed: int = 0  # bootstrap intervals

    @field_validator("slices")
    @classmethod
    def _scorable(cls, slices: int) -> int:
        if 0 < slices < MIN_SLICES:
            raise ValueError(f"must be 0 (whole volume) or at least {MIN_SLICES} (SSIM's window)")
        return slices


class SuiteConfig(StrictConfig):
    """One evaluation suite: cohorts, training recipes, models and tasks."""

    cohort: CohortPlan
    stage1: dict[str, Any]  # tumsyn train-text settings, without data and out
    stage2: dict[str, Any]  # tumsyn train settings shared by all models, likewise
    conditioners: tuple[str, ...] = CONDITIONERS
    tasks: tuple[Task, ...]  # (source, target) modalities every experiment evaluates
    task_specific: tuple[Task, ...] = ()  # tasks that also get a model of their own
    cache_workers: int = 0
    evaluation: EvaluationSettings = EvaluationSettings()


def _canonical_tasks(tasks: tuple[Task, ...]) -> tuple[Task, ...]:
    return tuple((canonical_modality(a), canonical_modality(b)) for a, b in tasks)


def load_suite(path: str | os.PathLike) -> SuiteConfig:
    """Read and validate a suite YAML file (unknown keys and bad values are refused)."""
    content = read_yaml(Path(path), missing="no such evaluation suite")
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of suite settings")
    try:
        suite = SuiteConfig(**content)
        unknown = sorted(set(suite.conditioners) - set(CONDITIONERS))
        if unknown:
            raise ConfigError(f"{path}: unknown conditioner(s) {unknown}; known: {CONDITIONERS}")
        if "generator" in suite.stage2 and suite.task_specific:
            raise ConfigError(
                f"{path}: task_specific models train on a data set's pairs; a stage2 with a "
                "generator has none (leave task_specific empty)"
            )
        return suite.model_copy(
            update={
                "tasks": _canonical_tasks(suite.tasks),
                "task_specific": _canonical_tasks(suite.task_specific),
            }
        )
    except ValidationError as error:
        raise ConfigError(f"{path}: {validation_message(error)}") from None


class SuiteModels(StrictConfig):
    """What :func:`prepare_models` made: the cohorts and every model's pipeline checkpoint."""

    cohorts: dict[str, Path]  # train, internal, zero-shot
    stage1: Path
    conditioners: dict[str, Path]  # conditioner -> pipeline.safetensors
    task_specific: dict[str, Path]  # task name -> pipeline.safetensors


def _finished(run: Path, steps: int) -> bool:
    from tumsyn.models.checkpoint import read_checkpoint_metadata

    checkpoint = run / "model.safetensors"
    return checkpoint.is_file() and read_checkpoint_metadata(checkpoint)["extra"]["step"] >= steps


def _cohort_digest(cohort: Path) -> str:
    """A digest of a cohort's stamp (plan, protocols, simulator): runs trained on another
    cohort are not this suite's."""
    return hashlib.sha256((cohort / "cohort.json").read_bytes()).hexdigest()[:16]


def _train(
    runs: Path, name: str, stage: str, settings: dict[str, Any], *, data: str, progress: bool
) -> Path:
    """Run (or resume, or reuse) the training run ``runs/name`` described by ``settings``, on
    the cohort whose digest is ``data`` (recorded in the YAML file's first line)."""
    from tumsyn.train import run

    folder = runs / name
    config_path = runs / f"{name}.yaml"
    settings = {**settings, "out": str(folder)}
    text = f"# train cohort {data}\n" + yaml.safe_dump(settings, sort_keys=False)
    if config_path.is_file() and config_path.read_text() != text and folder.exists():
        raise ConfigError(
            f"{folder}: made with other settings or another cohort than the suite's now "
            f"({config_path}); remove the run folder to train it again"
        )
    runs.mkdir(parents=True, exist_ok=True)
    with atomic_output(config_path) as temporary:
        temporary.write_text(text)
    if not _finished(folder, settings.get("steps", 1000)):
        resume = (folder / "state.pt").is_file()
        run(config_path, stage, resume=resume, progress=progress)
    return folder


def prepare_models(suite: SuiteConfig, workdir: Path, *, progress: bool = True) -> SuiteModels:
    """Make (or reuse) the cohorts and every model of ``suite`` under ``workdir``."""
    workdir = Path(workdir)
    cohorts = simulate_cohorts(suite.cohort, workdir / "data")
    data = {"source": str(cohorts["train"]), "cache": str(workdir / "cache")}
    train = functools.partial(_train, data=_cohort_digest(cohorts["train"]), progress=progress)
    runs = workdir / "runs"
    first = {**suite.stage1, "data": {**suite.stage1.get("data", {}), **data}}
    stage1 = train(runs, "stage1", "text", first)
    text_encoder = str(stage1 / "model.safetensors")
    shared = {**suite.stage2, "text_encoder": text_encoder}
    if "generator" not in suite.stage2:  # a generator draws its own samples: no data set
        shared["data"] = {**suite.stage2.get("data", {}), **data}
    conditioners = {
        name: train(runs, name, "synthesis", {**shared, "conditioner": name})
        / "pipeline.safetensors"
        for name in suite.conditioners
    }
    task_specific = {}
    for task in suite.task_specific:
        settings = {**shared, "conditioner": "bmlip", "tasks": [list(task)]}
        run_name = f"task-{task[0]}-{task[1]}"
        folder = train(runs, run_name, "synthesis", settings)
        task_specific[task_name(task)] = folder / "pipeline.safetensors"
    return SuiteModels(
        cohorts=cohorts,
        stage1=stage1 / "model.safetensors",
        conditioners=conditioners,
        task_specific=task_specific,
    )
