"""``tumsyn synthesize`` end to end with a small random pipeline, and the coverage warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import TINY_SYNTH_SPEC
from tumsyn.cli import main
from tumsyn.evaluate.metrics import dark_to_bright_ratio
from tumsyn.examples import example_t1w
from tumsyn.infer import SynthesisOptions
from tumsyn.infer.coverage import coverage_from_prompts, coverage_warnings
from tumsyn.io import load_nifti
from tumsyn.metadata import ImagingMetadata, format_prompt, load_protocols
from tumsyn.models import build, make_pipeline, save_checkpoint

TEXT = {"name": "text", "args": {"width": 16, "layers": 1, "heads": 2, "embed_dim": 16}}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    pipeline = make_pipeline(build(TEXT), build(TINY_SYNTH_SPEC))
    prompts = [format_prompt(p.metadata) for p in load_protocols("default")]
    path = tmp_path_factory.mktemp("model") / "pipeline.safetensors"
    extra = {"name": "random-test", "coverage": coverage_from_prompts(prompts)}
    return save_checkpoint(path, pipeline, extra=extra, dtype=torch.float16)


def test_synthesize_writes_image_and_sidecar(checkpoint: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "flair.nii.gz"
    code = main([
        "synthesize", str(example_t1w()), "-o", str(out), "--modality", "FLAIR",
        "--checkpoint", str(checkpoint), "--voxel-size", "3", "3", "3", "--quiet",
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr()
    assert "Modality: FLAIR" in printed.out and "TI(ms)" in printed.out
    assert "voxel size (3.0, 3.0, 3.0) mm is outside" in printed.err  # trained at 1 mm
    source, result = load_nifti(example_t1w()), load_nifti(out)
    assert result.voxel_size == pytest.approx((3.0, 3.0, 3.0))
    centre = lambda v: v.affine[:3, :3] @ (np.asarray(v.data.shape) - 1) / 2 + v.affine[:3, 3]  # noqa: E731
    assert np.allclose(centre(result), centre(source), atol=1.0)
    sidecar = json.loads(out.with_name("flair.json").read_text())
    assert sidecar["InversionTime"] == 1.8 and sidecar["SynthesisModel"] == "random-test"
    assert sidecar["SynthesisPrompt"].startswith("Age: None; Gender: None; Scanner: 3.0 Siemens")


def test_a_model_that_ignores_age_and_sex_says_so(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    extra = {"name": "subject-blind", "ignored_prompt_fields": ["age", "sex"]}
    pipeline = make_pipeline(build(TEXT), build(TINY_SYNTH_SPEC))
    checkpoint = save_checkpoint(tmp_path / "blind.safetensors", pipeline, extra=extra)
    out = tmp_path / "t2.nii.gz"
    assert main([
        "synthesize", str(example_t1w()), "-o", str(out), "--modality", "T2w", "--age", "70",
        "--checkpoint", str(checkpoint), "--voxel-size", "4", "4", "4", "--quiet",
    ]) == 0  # fmt: skip
    printed = capsys.readouterr()
    assert "prompt: Age: None; Gender: None; Scanner: 3.0 Siemens; Modality: T2w" in printed.out
    assert "note: subject-blind leaves age out of its prompts" in printed.err
    sidecar = json.loads(out.with_name("t2.json").read_text())
    assert sidecar["SynthesisPrompt"].startswith("Age: None; Gender: None;")


def test_bf16_precision_on_the_cpu_stays_close_to_fp32(checkpoint: Path, tmp_path: Path) -> None:
    outputs = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / f"{precision}.nii.gz"
        assert main([
            "synthesize", str(example_t1w()), "-o", str(out), "--modality", "T2w", "--quiet",
            "--checkpoint", str(checkpoint), "--precision", precision,
        ]) == 0  # fmt: skip
        outputs[precision] = load_nifti(out).data
    difference = np.abs(outputs["bf16"] - outputs["fp32"])
    top = outputs["fp32"].max()
    assert 0 < difference.max() < 0.05 * top  # autocast did run, and only rounding differs


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--modality", "T9w"], "unknown modality"),
        ([], "say which contrast"),
        (["--modality", "FLAIR", "--tr", "100", "--te", "200"], "TE"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(checkpoint, tmp_path, capsys, arguments, message):
    out = tmp_path / "out.nii.gz"
    code = main(["synthesize", str(example_t1w()), "-o", str(out), "--checkpoint", str(checkpoint),
                 *arguments])  # fmt: skip
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_missing_checkpoint_and_input(tmp_path, capsys) -> None:
    out = tmp_path / "out.nii.gz"
    assert main(["synthesize", str(example_t1w()), "-o", str(out), "--modality", "PD",
                 "--checkpoint", str(tmp_path / "none.safetensors")]) == 2  # fmt: skip
    assert "no such checkpoint" in capsys.readouterr().err
    assert (
        main(["synthesize", str(tmp_path / "no.nii.gz"), "-o", str(out), "--modality", "PD"]) == 2
    )
    assert not out.exists()


def test_coverage_warnings() -> None:
    trained = [format_prompt(p.metadata) for p in load_protocols("default")]
    coverage = coverage_from_prompts(trained)
    inside = load_protocols("default")[0].metadata
    assert coverage_warnings(inside, coverage) == []
    outside = ImagingMetadata(modality="T1w", field_strength=7.0, manufacturer="UIH", tr=30000,
                              te=2.98, ti=900, flip_angle=9, voxel_size=(1, 1, 1))  # fmt: skip
    notes = " | ".join(coverage_warnings(outside, coverage))
    assert "field strength 7 T" in notes and "manufacturer UIH" in notes and "TR 30000" in notes
    # Unstated subject facts are flagged only when the training prompts always stated them.
    assert "does not state age" not in notes
    stated = [format_prompt(p.metadata.replace(age=30, sex="F")) for p in load_protocols("default")]
    notes = " | ".join(coverage_warnings(inside, coverage_from_prompts(stated)))
    assert "does not state age but every training prompt did (add it to the target)" in notes
    assert "does not state sex" in notes and "field strength" not in notes


@pytest.mark.parametrize(
    "subject", [[], ["--age", "25", "--sex", "M"]], ids=["no-subject", "subject"]
)
def test_bundled_model_makes_the_contrasts_it_is_asked_for(
    tmp_path: Path, subject: list[str]
) -> None:
    # On the bundled (real-derived) example, with and without age and sex (the model was trained
    # with a fifth of its prompts lacking them): CSF (where the T1w is darkest) is dark in the
    # FLAIR and bright in the T2w, relative to WM.
    source = load_nifti(example_t1w())
    ratios = {}
    for modality in ("FLAIR", "T2w"):
        out = tmp_path / f"{modality}.nii.gz"
        assert main([
            "synthesize", str(example_t1w()), "-o", str(out), "--modality", modality, *subject,
            "--quiet",
        ]) == 0  # fmt: skip
        ratios[modality] = dark_to_bright_ratio(load_nifti(out).data, source.data)
    assert ratios["FLAIR"] < 0.6 and ratios["T2w"] > 1.5, ratios


def test_dark_to_bright_ratio() -> None:
    reference = np.arange(1, 101, dtype=np.float32).reshape(10, 10)
    image = np.where(reference < 11, 5.0, np.where(reference > 90, 10.0, 7.0))
    assert dark_to_bright_ratio(image, reference) == pytest.approx(0.5)
    assert dark_to_bright_ratio(image[::-1], reference[::-1]) == pytest.approx(0.5)


def _patch_settings(options: SynthesisOptions, recommended: dict) -> tuple:
    chosen = options.with_recommendation(recommended)
    return chosen.patch_size, chosen.overlap


def test_patch_settings_come_from_the_options_then_the_checkpoint() -> None:
    assert _patch_settings(SynthesisOptions(), {}) == (32, 8)
    recommended = {"patch_size": 60, "overlap": 10}
    assert _patch_settings(SynthesisOptions(), recommended) == (60, 10)
    assert _patch_settings(SynthesisOptions(patch_size=40, overlap=4), recommended) == (40, 4)
    assert _patch_settings(SynthesisOptions(patch_size=40), recommended) == (40, 10)
