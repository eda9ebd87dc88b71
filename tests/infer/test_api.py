"""The Python API: ``tumsyn.Synthesizer`` takes any form of image and target, returns a nibabel
image on the input's world grid, and is reusable across calls and threads."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import tumsyn
from tumsyn.errors import ConfigError, InputFileError, OptionError
from tumsyn.examples import example_t1w
from tumsyn.infer.loading import BUNDLED_CHECKPOINTS, read_pipeline_metadata
from tumsyn.io import Grid, target_grid

README = Path(__file__).parents[2] / "README.md"


@pytest.fixture(scope="module")
def synth() -> tumsyn.Synthesizer:
    return tumsyn.Synthesizer.from_checkpoint(device="cpu")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A 24^3 crop (2 mm voxels, one patch) of the bundled T1w, named as a BIDS T1w: small
    enough to synthesize in about a second."""
    image = nib.load(example_t1w())
    start = [(n - 24) // 2 for n in image.shape]
    cropped = image.slicer[tuple(slice(s, s + 24) for s in start)]
    path = tmp_path_factory.mktemp("api") / "sub-01_T1w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(cropped.dataobj, dtype=np.float32), cropped.affine), path)
    return path


def _python_block(section: str) -> str:
    text = README.read_text(encoding="utf-8")
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", body, re.S).group(1)


def test_the_readme_example_runs_as_written(source, tmp_path, monkeypatch) -> None:
    (tmp_path / "sub-01_T1w.nii.gz").write_bytes(source.read_bytes())
    monkeypatch.chdir(tmp_path)
    names: dict = {}
    exec(compile(_python_block("Python API"), str(README), "exec"), names)
    flair, t2, pd = names["flair"], names["t2"], names["pd"]
    assert isinstance(flair, nib.Nifti1Image) and "Modality: FLAIR" in flair.prompt
    assert nib.load("sub-01_FLAIR.nii.gz").shape == (24, 24, 24)
    assert t2.shape == (60, 60, 60) and "TR(ms), TE(ms)" in t2.prompt
    np.testing.assert_allclose(t2.header.get_zooms(), (0.8, 0.8, 0.8), atol=1e-6)
    assert "(3000.0, 100.0," in t2.prompt and "Modality: PD" in pd.prompt
    assert re.search(r"\(\d+\.\d+, 30\.0,", pd.prompt), pd.prompt
    assert (
        names["larger"].options.patch_size == 48
        and names["larger"].pipeline is names["synth"].pipeline
    )
    assert Path("sub-01_PD.nii.gz").is_file() and Path("sub-01_PD.json").is_file()


def test_every_form_of_image_gives_the_same_output(synth, source) -> None:
    image = nib.load(source)
    data = np.asarray(image.dataobj, dtype=np.float32)
    outputs = [
        synth(source, "FLAIR"),
        synth(str(source), "FLAIR"),
        synth(image, "FLAIR"),
        synth(data, "FLAIR", affine=image.affine),
        synth(torch.from_numpy(data), "FLAIR", affine=image.affine),
    ]
    first = np.asarray(outputs[0].dataobj)
    assert first.shape == image.shape and np.abs(first).max() > 0
    for output in outputs[1:]:
        assert np.array_equal(np.asarray(output.dataobj), first)
        np.testing.assert_allclose(output.affine, image.affine, atol=1e-6)
        assert output.prompt == outputs[0].prompt


def test_every_form_of_target_gives_the_same_prompt(synth, source) -> None:
    by_name = synth.target("PD", source=source, age=40)
    assert by_name.modality == "PD" and by_name.age == 40 and by_name.voxel_size == (2.0, 2.0, 2.0)
    prompt = tumsyn.format_prompt(by_name)
    assert synth.target(prompt, source=source) == by_name
    assert synth.target(by_name) == by_name
    assert synth.target(source=source, modality="pd", age=40) == by_name
    assert synth.target(prompt, te=20).te == 20  # keywords win over the prompt


def test_the_output_lies_on_the_inputs_field_of_view(synth, source) -> None:
    image = nib.load(source)
    output = synth(image, "T2w", voxel_size=(3.0, 2.0, 4.0))
    expected = target_grid(Grid(image.shape, image.affine), (3.0, 2.0, 4.0))
    assert output.shape == expected.shape
    np.testing.assert_allclose(output.affine, expected.affine, atol=1e-6)
    assert output.metadata.voxel_size == (3.0, 2.0, 4.0)


def test_threads_give_the_results_of_calls_in_a_row(synth, source) -> None:
    requests = [("FLAIR", {}), ("T2w", {"te": 90}), ("PD", {"age": 60})]
    in_a_row = [np.asarray(synth(source, t, **f).dataobj) for t, f in requests]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(synth, source, t, **f) for t, f in requests]
        threaded = [np.asarray(future.result().dataobj) for future in futures]
    for one, other in zip(in_a_row, threaded, strict=True):
        assert np.array_equal(one, other)
    assert not np.array_equal(in_a_row[0], in_a_row[1])  # the prompts do change the output


def test_an_untrained_target_comes_with_warnings(synth, source) -> None:
    output = synth(source, "FLAIR", manufacturer="Toshiba")
    assert output.warnings == ("manufacturer Toshiba was not in the training data",)
    assert synth(source, "FLAIR", age=30, sex="F").warnings == ()


def test_the_bundled_model_leaves_age_and_sex_out_of_its_prompts(synth, source) -> None:
    # Its training data carry no contrast for them (README, model card).
    assert synth.ignored_fields == ("age", "sex")
    told = synth(source, "T2w", age=70, sex="F")
    assert told.prompt.startswith("Age: None; Gender: None;") and told.metadata.age == 70
    assert np.array_equal(np.asarray(told.dataobj), np.asarray(synth(source, "T2w").dataobj))


def test_options_name_the_option_the_value_and_what_is_allowed() -> None:
    with pytest.raises(OptionError) as caught:
        tumsyn.SynthesisOptions(precision="fp16")
    error = caught.value
    assert (error.option, error.value) == ("precision", "fp16") and "'bf16'" in error.allowed
    with pytest.raises(OptionError, match="patch_size '32': expected a valid integer"):
        tumsyn.SynthesisOptions(patch_size="32")
    with pytest.raises(ConfigError, match="unknown synthesis option 'patchsize'"):
        tumsyn.SynthesisOptions(patchsize=32)
    assert "--" not in str(error)  # library errors speak Python, the CLI speaks flags


def test_with_options_keeps_the_model_and_the_device(synth) -> None:
    other = synth.with_options(patch_size=16, overlap=4)
    assert other.pipeline is synth.pipeline and other.options.patch_size == 16
    assert synth.options.patch_size == 32  # the original is unchanged
    with pytest.raises(ConfigError, match="device is chosen when the model is loaded"):
        synth.with_options(device="cpu")


def test_bundled_models_are_chosen_by_name(synth) -> None:
    assert synth.name == BUNDLED_CHECKPOINTS[0] == "tumsyn-v2"  # the default
    assert "tumsyn-tiny" in BUNDLED_CHECKPOINTS  # model v1 stays, its numbers reproducible
    for name in BUNDLED_CHECKPOINTS:  # a name (str or, from a CLI, Path) finds its own file
        assert read_pipeline_metadata(Path(name))["extra"]["name"] == name
    with pytest.raises(InputFileError):
        read_pipeline_metadata("tumsyn-v9")  # any other name is a path, and there is none


def test_importing_tumsyn_does_no_work() -> None:
    code = (
        "import sys, tumsyn; print(sorted({'torch', 'nibabel'} & set(sys.modules))); "
        "tumsyn.ImagingMetadata; print('torch' in sys.modules); tumsyn.Synthesizer; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["[]", "False", "True"]  # loaded when first used
