"""Smoke test of the evaluation suite (what `make eval-quick` runs), at the smallest size:
cohorts, stage 1, a model per conditioner, a task-specific model, every experiment script, and
the README tables regenerated from their JSON. It checks what is written and that it is
consistent, never the models' quality (a few training steps)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers import TINY_BMLIP_SPEC, TINY_SYNTH_SPEC, benchmark_module, run_benchmark
from tumsyn.cli import main as tumsyn_main
from tumsyn.models.checkpoint import read_checkpoint_metadata

ROOT = Path(__file__).resolve().parents[2]
STEPS = {"steps": 2, "validate_every": 1, "checkpoint_every": 2, "batch_size": 2}
SUITE = {
    "cohort": {"train_subjects": 2, "internal_subjects": 1, "zero_shot_subjects": 1,
               "voxel_size": 6.0, "seed": 0},
    "stage1": {"model": TINY_BMLIP_SPEC, "spacing": 12.0, **STEPS,
               "data": {"validation_fraction": 0.5}},
    "stage2": {"model": TINY_SYNTH_SPEC, "patch_size": 8, "queries": 64, "validation_patches": 2,
               **STEPS, "data": {"validation_fraction": 0.5}},
    "conditioners": ["bmlip", "onehot", "metadata"],
    "tasks": [["T1w", "T2w"], ["FLAIR", "T1w"]],
    "task_specific": [["T1w", "T2w"], ["FLAIR", "FLAIR"]],
    "evaluation": {"slices": 11, "patch_size": 8, "max_cases": 1, "seed": 0},
}  # fmt: skip
EXPERIMENTS = ("exp_internal", "exp_zero_shot", "exp_task_specific", "exp_morphometry",
               "exp_retrieval", "exp_unseen_inputs")  # fmt: skip


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """Every experiment run once on a tiny suite: (suite file, work folder, results folder)."""
    folder = tmp_path_factory.mktemp("suite")
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(SUITE))
    results, workdir = folder / "results", folder / "work"
    arguments = ["--suite", str(path), "--workdir", str(workdir), "--quiet"]
    figures = folder / "figures"
    for name in EXPERIMENTS:
        run_benchmark(name, arguments, results, figures)
    run_benchmark(
        "exp_controllability",
        [*arguments, "--points", "2", "--sweeps", "t2w-te", "--slices", "0"],
        results,
    )
    run_benchmark("exp_heterogeneous_resolution",
                  [*arguments, "--draws", "1", "--orientations", "axial", "--slices", "11"],
                  results)  # fmt: skip
    yield path, workdir, results


def _json(results: Path, name: str) -> dict:
    return json.loads((results / f"{name}.json").read_text())


def test_every_model_is_a_pipeline_that_synthesize_runs(suite, tmp_path: Path) -> None:
    _, workdir, _ = suite
    runs = workdir / "runs"
    names = ["bmlip", "onehot", "metadata", "task-T1w-T2w", "task-FLAIR-FLAIR"]
    source = next((workdir / "data" / "internal").glob("sub-*/anat/*_T1w.nii.gz"))
    for name in names:
        checkpoint = runs / name / "pipeline.safetensors"
        assert read_checkpoint_metadata(checkpoint)["spec"]["name"] == "pipeline"
        out = tmp_path / f"{name}.nii.gz"
        command = ["synthesize", str(source), "-o", str(out), "--modality", "T2w", "--quiet",
                   "--checkpoint", str(checkpoint), "--patch-size", "8"]  # fmt: skip
        assert tumsyn_main(command) == 0 and out.is_file()


def test_each_experiment_reports_every_method_with_its_command(suite) -> None:
    _, _, results = suite
    internal = _json(results, "internal")
    assert internal["suite"] == "tiny" and "exp_internal.py" in internal["command"]
    methods = [row["method"] for row in internal["rows"]]
    assert methods == ["tumsyn (BMLIP text)", "one-hot", "metadata vector", "copy source",
                       "inverted source"]  # fmt: skip
    for row in internal["rows"]:
        assert row["psnr_low"] <= row["psnr"] <= row["psnr_high"]
    tasks = {row["task"] for row in _json(results, "internal_tasks")["rows"]}
    assert tasks == {"T1w->T2w", "FLAIR->T1w"}
    by_input = {(r["input"], r["method"]): r for r in _json(results, "internal_inputs")["rows"]}
    by_task = {(r["task"], r["method"]): r for r in _json(results, "internal_tasks")["rows"]}
    assert {modality for modality, _ in by_input} == {"T1w", "FLAIR"}
    for method in methods:  # one task per input here, so the pooled input is that task
        assert by_input[("FLAIR", method)]["psnr"] == by_task[("FLAIR->T1w", method)]["psnr"]
    for name in ("unseen_inputs", "unseen_inputs_zero_shot"):  # T1CE, T2*w, SWI inputs
        unseen = {(r["input"], r["method"]) for r in _json(results, f"{name}_inputs")["rows"]}
        assert {modality for modality, _ in unseen} <= {"T1CE", "T2star", "SWI"}
        assert {method for _, method in unseen} == set(methods) and unseen
    specific = {(r["task"], r["method"]) for r in _json(results, "task_specific")["rows"]}
    assert ("FLAIR->FLAIR", "task-specific") in specific
    assert ("T1w->T2w", "tumsyn (BMLIP text)") in specific
    morphometry = _json(results, "morphometry")["rows"]
    assert {row["method"] for row in morphometry} == {"tumsyn (BMLIP text)", "one-hot",
                                                      "metadata vector"}  # fmt: skip
    assert all(0.0 <= row["dice_GM"] <= 1.0 for row in morphometry)
    retrieval = _json(results, "retrieval_suite")["rows"]
    assert [(r["split"], r["task"]) for r in retrieval] == [
        (split, task) for split in ("internal", "zero-shot")
        for task in ("image->text", "image->modality")
    ]  # fmt: skip
    assert all(0.0 <= r["top1"] <= 1.0 and r["chance"] > 0 for r in retrieval)
    control = _json(results, "controllability_correlation")
    assert control["suite"] == "tiny" and {r["sweep"] for r in control["rows"]} == {"T2w TE"}
    resolution = {row["method"] for row in _json(results, "heterogeneous_resolution")["rows"]}
    assert "resolution-only FLAIR->FLAIR" in resolution


def test_zero_shot_cases_use_protocols_never_seen_in_training(suite) -> None:
    _, workdir, results = suite
    protocols = json.loads((workdir / "data" / "protocols.json").read_text())
    seen = set(protocols["seen"])
    rows = _json(results, "zero_shot_cases")["rows"]
    assert rows
    for row in rows:
        target = row["case"].split("__from-")[0]
        acquisition = target.split("_acq-")[1].split("_")[0]
        assert f"{row['task'].split('->')[1]}/{acquisition}" not in seen


def test_the_readme_tables_are_regenerated_from_the_json(suite, tmp_path: Path) -> None:
    _, _, results = suite
    script = ROOT / "scripts" / "eval_tables.py"
    spec = importlib.util.spec_from_file_location("eval_tables", script)
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    text = "# x\n<!-- results:internal -->\n<!-- /results:internal -->\n"
    updated, names = tables.update_readme(text, results)
    assert names == ["internal"]
    row = _json(results, "internal")["rows"][0]
    assert f"{row['psnr']:.2f} [{row['psnr_low']:.2f}, {row['psnr_high']:.2f}]" in updated
    assert "exp_internal.py" in updated


def test_a_lab_runs_the_protocol_on_its_own_bids_data(suite, tmp_path: Path) -> None:
    _, workdir, _ = suite
    results = tmp_path / "results"
    own = workdir / "data" / "internal"  # any co-registered BIDS data set with sidecars
    model = workdir / "runs" / "bmlip" / "pipeline.safetensors"
    arguments = ["--data", str(own), "--model", f"mine={model}", "--tasks", "T1w:T2w",
                 "--patch-size", "8", "--workdir", str(tmp_path / "work"), "--quiet"]  # fmt: skip
    run_benchmark("exp_internal", arguments, results, tmp_path / "figures")
    content = _json(results, "internal_own_data")
    assert content["suite"] == "your data" and f"--data {own}" in content["command"]
    assert [row["method"] for row in content["rows"]] == ["mine", "copy source", "inverted source"]
    cases = _json(results, "internal_own_data_cases")["rows"]
    assert {row["task"] for row in cases} == {"T1w->T2w"} and len(cases) == 3 * len(
        {row["case"] for row in cases}
    )


def test_a_shipped_checkpoint_is_evaluated_beside_the_suite_models(suite, tmp_path: Path) -> None:
    path, workdir, _ = suite
    results = tmp_path / "results"
    shipped = workdir / "runs" / "onehot" / "pipeline.safetensors"  # any pipeline checkpoint
    arguments = ["--suite", str(path), "--workdir", str(workdir), "--model", f"shipped={shipped}",
                 "--quiet"]  # fmt: skip
    run_benchmark("exp_internal", arguments, results, tmp_path / "figures")
    rows = {row["method"]: row for row in _json(results, "internal")["rows"]}
    assert "shipped" in rows and "tumsyn (BMLIP text)" in rows
    # The same weights under another name give the same scores, from their own predictions.
    assert rows["shipped"]["psnr"] == pytest.approx(rows["one-hot"]["psnr"], abs=1e-4)
    assert (workdir / "predictions" / "shipped").is_dir()


def test_runs_of_another_cohort_are_not_reused(suite) -> None:
    from tumsyn.errors import ConfigError
    from tumsyn.evaluate.suite import load_suite, prepare_models

    path, workdir, _ = suite
    config = workdir / "runs" / "stage1.yaml"
    recorded = config.read_text()
    config.write_text("# train cohort 0000000000000000\n" + recorded.split("\n", 1)[1])
    try:
        with pytest.raises(ConfigError, match="another cohort"):
            prepare_models(load_suite(path), workdir, progress=False)
    finally:
        config.write_text(recorded)
    assert prepare_models(load_suite(path), workdir, progress=False).stage1.is_file()


def test_a_generator_suite_trains_stage2_from_virtual_subjects(tmp_path: Path) -> None:
    """stage2.generator (the v2 recipe): no data set in the stage-2 runs, and no task-specific
    models, which need a data set's pairs."""
    from tumsyn.errors import ConfigError
    from tumsyn.evaluate.suite import load_suite

    generated = {**SUITE, "stage2": {**SUITE["stage2"], "generator": {"subjects": 1}}}
    generated["stage2"].pop("data")
    path = tmp_path / "generated.yaml"
    path.write_text(yaml.safe_dump(generated))
    with pytest.raises(ConfigError, match="task_specific"):
        load_suite(path)
    path.write_text(yaml.safe_dump({**generated, "task_specific": []}))
    assert load_suite(path).stage2["generator"] == {"subjects": 1}


@pytest.mark.parametrize(
    ("argv", "own"),
    [(["--data", "ds"], True), (["--data=ds"], True), (["--dat", "ds"], True),
     (["--suite", "quick", "--tasks", "T1w:T2w"], False), ([], False)],
)  # fmt: skip
def test_a_users_data_set_is_recognised_as_the_experiment_parses_it(argv, own):
    with benchmark_module("exp_unseen_inputs") as experiment:  # runs both splits, or --data once
        assert experiment.given_own_data(argv) is own


def test_a_negative_erosion_is_refused_before_any_work(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_benchmark("exp_internal", ["--erode", "-1", "--workdir", str(tmp_path)], tmp_path)
    assert exit_.value.code == 2 and "--erode -1: give 0 or more voxels" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing made
