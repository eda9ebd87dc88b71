"""The experiments' building blocks on a small simulated data set: cases, slabs, scores,
baselines, summaries and cached predictions."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import TINY_SYNTH_SPEC
from tumsyn.evaluate.experiments import (
    evaluate_cases,
    inverted_source,
    load_case,
    model_method,
    score,
    summarise,
    task_cases,
)
from tumsyn.metadata import load_protocols, sidecar_path
from tumsyn.models import build, load_checkpoint, make_pipeline, save_checkpoint
from tumsyn.models.routed import make_routed
from tumsyn.simulate import CohortSettings, simulate_dataset

TEXT = {"name": "text", "args": {"width": 16, "layers": 1, "heads": 2, "embed_dim": 16}}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two subjects with two T1w protocols, one T2w and two FLAIR at 6 mm."""
    wanted = {("T1w", "mprage"), ("T1w", "tfe"), ("T2w", "tse"), ("FLAIR", "tse"),
              ("FLAIR", "space")}  # fmt: skip
    protocols = [
        p for p in load_protocols("library") if (str(p.metadata.modality), p.name) in wanted
    ]
    root = tmp_path_factory.mktemp("experiments") / "bids"
    return simulate_dataset(root, CohortSettings(subjects=2, seed=3), protocols,
                            voxel_size=(6, 6, 6), progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "pipeline.safetensors"
    save_checkpoint(path, make_pipeline(build(TEXT), build(TINY_SYNTH_SPEC)))
    return path


def test_cases_pair_each_target_with_a_source_of_the_same_subject(dataset: Path) -> None:
    cases = task_cases(dataset, [("T1w", "T2w"), ("T2w", "T1w")])
    assert [c.task for c in cases] == [("T1w", "T2w")] * 2 + [("T2w", "T1w")] * 4
    for case in cases:
        assert case.source.subject == case.target.subject
        assert str(case.source.metadata.modality) == case.task[0]
    # The subject's two T1w protocols both serve as targets of T2w->T1w.
    assert len({c.target.path.name for c in cases if c.task == ("T2w", "T1w")}) == 4


def test_a_same_modality_task_never_predicts_an_image_from_itself(dataset: Path) -> None:
    cases = task_cases(dataset, [("FLAIR", "FLAIR")])
    assert len(cases) == 4 and all(c.source.path != c.target.path for c in cases)


def test_a_case_limit_still_spans_subjects(dataset: Path) -> None:
    cases = task_cases(dataset, [("T2w", "T1w")], max_cases=2)
    assert len(cases) == 2 and len({c.target.subject for c in cases}) == 2


def test_load_case_crops_a_central_slab_and_masks_the_brain(dataset: Path) -> None:
    case = task_cases(dataset, [("T1w", "T2w")])[0]
    whole, slab = load_case(case), load_case(case, slices=5)
    depth = whole.truth.shape[2]
    start = (depth - 5) // 2
    np.testing.assert_array_equal(slab.truth, whole.truth[:, :, start : start + 5])
    assert slab.source.shape == slab.truth.shape == slab.mask.shape
    # The slab's affine places its first slice where the whole volume's slice `start` lies.
    affine = whole.source.affine
    np.testing.assert_allclose(
        slab.source.affine[:3, 3], affine[:3, :3] @ [0, 0, start] + affine[:3, 3]
    )
    # The 1 mm tissue maps are brought to the 6 mm image grid: fractions that still sum to ~1.
    assert set(whole.tissues) == {"GM", "WM", "CSF"} and whole.mask.sum() > 0
    total = sum(whole.tissues.values())[whole.mask]
    assert total.max() <= 1.0 + 1e-2  # interpolation, float32


def test_an_eroded_case_scores_only_the_voxels_inside_the_eroded_mask(dataset: Path) -> None:
    from scipy import ndimage

    case = task_cases(dataset, [("T1w", "T2w")])[0]
    whole, eroded = load_case(case), load_case(case, erode=1)
    np.testing.assert_array_equal(eroded.mask, ndimage.binary_erosion(whole.mask))
    assert 0 < eroded.mask.sum() < whole.mask.sum()
    np.testing.assert_array_equal(eroded.truth, whole.truth)  # only where it is scored changes


def test_the_truth_scores_perfectly(dataset: Path) -> None:
    data = load_case(task_cases(dataset, [("T1w", "T2w")])[0])
    scores = score(data, data.truth)
    assert scores["psnr"] == float("inf") and scores["ssim"] == pytest.approx(1.0)
    assert scores["mae"] == 0.0 and scores["gm_wm_error"] == pytest.approx(0.0)


def test_a_flair_that_hides_the_lesions_has_a_negative_lesion_error(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A subject with 17 cc of lesions (cohort seed 7): the truth scores 0; the truth with its
    lesions flattened to white matter's intensity scores below 0 (lesions dimmer, relative to
    WM, than they should be). The fixture's subjects have too little lesion to be scored."""
    protocols = [p for p in load_protocols("library") if p.name in ("mprage", "space")]
    root = tmp_path_factory.mktemp("lesioned") / "bids"
    lesioned = simulate_dataset(root, CohortSettings(subjects=1, seed=7), protocols,
                                voxel_size=(6, 6, 6), progress=False)  # fmt: skip
    data = load_case(task_cases(lesioned, [("T1w", "FLAIR")])[0])
    assert data.lesions is not None
    assert score(data, data.truth)["lesion_wm_error"] == pytest.approx(0.0, abs=1e-6)
    white = np.average(data.truth, weights=data.tissues["WM"])
    share = data.lesions / np.maximum(sum(data.tissues.values()) + data.lesions, 1e-6)
    hidden = (1 - share) * data.truth + share * white
    assert score(data, hidden)["lesion_wm_error"] < -0.05


def test_inverted_source_flips_intensities_inside_the_mask(dataset: Path) -> None:
    data = load_case(task_cases(dataset, [("T1w", "T2w")])[0])
    source = np.asarray(data.source.dataobj, dtype=np.float32)
    inverted = inverted_source(data)
    inside = source[data.mask]
    np.testing.assert_allclose(inverted[data.mask], inside.max() + inside.min() - inside, rtol=1e-6)
    assert not inverted[~data.mask].any()


def test_summaries_give_means_intervals_and_a_pooled_group() -> None:
    rows = [
        {"task": "a", "method": "m", "psnr": 10.0},
        {"task": "a", "method": "m", "psnr": 20.0},
        {"task": "b", "method": "m", "psnr": 30.0},
        {"task": "b", "method": "m", "psnr": None},
    ]
    summary = summarise(rows, by=("task", "method"), metrics=("psnr",), seed=0)
    assert [(s["task"], s["psnr"], s["n"]) for s in summary] == [
        ("a", 15.0, 2), ("b", 30.0, 2), ("all tasks", 20.0, 4)
    ]  # fmt: skip
    assert 10.0 <= summary[0]["psnr_low"] <= summary[0]["psnr_high"] <= 20.0


def test_model_predictions_are_cached_per_case(
    dataset: Path, checkpoint: Path, tmp_path: Path
) -> None:
    cases = task_cases(dataset, [("T1w", "T2w")], max_cases=1)
    model = tmp_path / "model.safetensors"
    shutil.copyfile(checkpoint, model)
    method = model_method(model, tmp_path / "cache", patch_size=8)
    rows = evaluate_cases(cases, {"tiny": method}, slices=11, progress=False)
    assert len(rows) == 1 and np.isfinite(rows[0]["psnr"])
    (cached,) = (tmp_path / "cache").rglob("*.nii")
    before = cached.stat().st_mtime_ns
    again = evaluate_cases(cases, {"tiny": method}, slices=11, progress=False)
    assert again == rows and cached.stat().st_mtime_ns == before
    assert nib.load(cached).shape == load_case(cases[0], 11).truth.shape
    # Other weights under the same name, even with an older time stamp: predicted afresh.
    pipeline = load_checkpoint(checkpoint)
    with torch.no_grad():
        for weight in pipeline.synth.parameters():
            weight.add_(0.05)
    save_checkpoint(model, pipeline)
    os.utime(model, (0, 0))
    method = model_method(model, tmp_path / "cache", patch_size=8)
    evaluate_cases(cases, {"tiny": method}, slices=11, progress=False)
    assert len(list((tmp_path / "cache").rglob("*.nii"))) == 2


def test_a_re_rendered_source_or_an_edited_sidecar_is_predicted_afresh(
    dataset: Path, checkpoint: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    method = model_method(checkpoint, tmp_path / "cache", patch_size=8)

    def predictions_after_one_case() -> int:
        cases = task_cases(copy, [("T1w", "T2w")], max_cases=1)
        evaluate_cases(cases, {"tiny": method}, slices=11, progress=False)
        return len(list((tmp_path / "cache").rglob("*.nii")))

    assert predictions_after_one_case() == 1
    (case,) = task_cases(copy, [("T1w", "T2w")], max_cases=1)
    source = nib.load(case.source.path)
    nib.save(nib.Nifti1Image(np.asarray(source.dataobj) * 0.5, source.affine), case.source.path)
    assert predictions_after_one_case() == 2
    sidecar = sidecar_path(case.target.path)
    fields = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**fields, "EchoTime": fields["EchoTime"] * 0.8}))
    assert predictions_after_one_case() == 3
    assert predictions_after_one_case() == 3  # and reused once made


def test_a_routed_model_reads_each_case_with_its_sources_network(
    dataset: Path, checkpoint: Path, tmp_path: Path
) -> None:
    """A routed model whose T2w network is the plain model's scores T2w->T1w cases as the plain
    model does (its T1w fallback, another network, would not)."""
    plain = load_checkpoint(checkpoint)
    torch.manual_seed(1)
    routed = make_routed({"T1w": build(TINY_SYNTH_SPEC), "T2w": plain.synth}, "T1w")
    save_checkpoint(tmp_path / "routed.safetensors", make_pipeline(plain.text, routed))
    cases = task_cases(dataset, [("T2w", "T1w")], max_cases=1)
    paths = {"plain": checkpoint, "routed": tmp_path / "routed.safetensors"}
    methods = {name: model_method(path, None, patch_size=8) for name, path in paths.items()}
    rows = evaluate_cases(cases, methods, slices=11, progress=False)
    assert rows[0]["psnr"] == rows[1]["psnr"]
