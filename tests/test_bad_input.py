"""Bad input, command by command: one line naming the problem and the fix, exit code 2, no
traceback, nothing written, and every input byte-identical afterwards.

Each case runs ``tumsyn`` in-process on real files in a fresh folder; the folder's content (every
file's bytes) is compared before and after, so a stray output, a temporary file left behind or a
modified input fails the case whatever the command.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tumsyn.cli import main
from tumsyn.errors import TumsynError
from tumsyn.models import build, save_checkpoint

LONG_PROMPT = (
    "Age: 70; Gender: F; Scanner: 3.0 Siemens; Modality: FLAIR; Voxel size: (0.46875, 0.46875, "
    "0.46875); Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree): (9000.0, 81.0, 2500.0, "
    "150.0)"
)


class _RunsCode:
    """A pickle payload: unpickling it would create ``marker`` (a stand-in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _nifti(folder: Path, name: str, data: np.ndarray, affine=None) -> Path:
    """Write with nibabel; the affine goes in the sform alone (a qform cannot hold every one)."""
    path = folder / name
    image = nib.Nifti1Image(data, None)
    image.set_sform(np.eye(4) if affine is None else affine, code=1)
    nib.save(image, path)
    return path


def _huge_header(path: Path) -> Path:
    """A .nii whose header claims 2048^3 voxels (8 GiB as float32) and holds no data."""
    header = nib.Nifti1Header()
    header.set_data_shape((2048, 2048, 2048))
    header.set_data_dtype(np.float32)
    header.set_sform(np.eye(4), code=1)
    with path.open("wb") as handle:
        header.write_to(handle)
        handle.write(b"\0" * 4)
    return path


def _bids(root: Path, image: np.ndarray, *, sidecars: bool, images: bool = True) -> Path:
    anat = root / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    if images:
        _nifti(anat, "sub-01_T1w.nii.gz", image)
    if sidecars:
        (anat / "sub-01_T1w.json").write_text('{"RepetitionTime": 2.3}')
    return root


@pytest.fixture
def files(tmp_path: Path, brain_like: np.ndarray) -> dict[str, Path]:
    """Every bad (and one good) input of the battery, in ``tmp_path``."""
    good = _nifti(tmp_path, "sub-01_T1w.nii.gz", brain_like)
    shear = np.eye(4)
    shear[0, 1] = 0.3
    singular = np.diag([1.0, 1.0, 0.0, 1.0])
    nan = brain_like.copy()
    nan[5, 5, 5] = np.nan
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(good.read_bytes()[:200])
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder.nii.gz").mkdir()
    synth_only = save_checkpoint(tmp_path / "synth-only.safetensors", build("tumsyn-tiny"))
    (tmp_path / "corrupt.safetensors").write_bytes(os.urandom(2000))
    torch.save({"weights": _RunsCode(tmp_path / "code-ran")}, tmp_path / "evil.pth")
    (tmp_path / "protocols-bad.yaml").write_text(
        "protocols:\n  - {name: x, modality: T1w, colour: red}\n"
    )
    (tmp_path / "not-json.json").write_text("{RepetitionTime: 2.3")
    (tmp_path / "not-dicom.dcm").write_bytes(b"\0" * 300)
    escaping = tmp_path / "manifest" / "list.csv"
    escaping.parent.mkdir()
    escaping.write_text(f"path,subject,modality\n../{good.name},s1,T1w\n")
    config = (
        f"model: tumsyn-tiny\ntext_encoder: {synth_only}\ndata: {{source: {escaping}}}\n"
        f"out: {tmp_path / 'run'}\n"
    )
    (tmp_path / "escape.yaml").write_text(config)
    (tmp_path / "unknown-key.yaml").write_text(config + "colour: red\n")
    (tmp_path / "wrong-type.yaml").write_text(config + "steps: many\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    hard_link = tmp_path / "hard-link.nii.gz"
    os.link(good, hard_link)
    (tmp_path / "symlink.nii.gz").symlink_to(good)
    return {
        "good": good,
        "text": tmp_path / "notes.txt",
        "truncated": truncated,
        "empty": tmp_path / "empty.nii.gz",
        "folder": tmp_path / "folder.nii.gz",
        "2d": _nifti(tmp_path, "flat.nii.gz", brain_like[:, :, 4]),
        "4d": _nifti(tmp_path, "series.nii.gz", np.stack([brain_like] * 2, axis=-1)),
        "zeros": _nifti(tmp_path, "zeros.nii.gz", np.zeros_like(brain_like)),
        "nan": _nifti(tmp_path, "nan.nii.gz", nan),
        "sheared": _nifti(tmp_path, "sheared.nii.gz", brain_like, shear),
        "singular": _nifti(tmp_path, "singular.nii", brain_like, singular),
        "huge": _huge_header(tmp_path / "huge.nii"),
        "missing": tmp_path / "missing.nii.gz",
        "hard_link": hard_link,
        "symlink": tmp_path / "symlink.nii.gz",
        "out": tmp_path / "out.nii.gz",
        "no_folder_out": tmp_path / "no-such-folder" / "out.nii.gz",
        "synth_only": synth_only,
        "corrupt": tmp_path / "corrupt.safetensors",
        "evil": tmp_path / "evil.pth",
        "unknown_key": tmp_path / "unknown-key.yaml",
        "wrong_type": tmp_path / "wrong-type.yaml",
        "bad_protocols": tmp_path / "protocols-bad.yaml",
        "not_json": tmp_path / "not-json.json",
        "not_dicom": tmp_path / "not-dicom.dcm",
        "escape": tmp_path / "escape.yaml",
        "full": tmp_path / "full",
        "bids": _bids(tmp_path / "bids", brain_like, sidecars=True),
        "bids_no_images": _bids(tmp_path / "bids-empty", brain_like, sidecars=True, images=False),
    }


SYNTH = ["synthesize", "{good}", "-o", "{out}", "--modality", "FLAIR", "--quiet"]

CASES: dict[str, tuple[list[str], str]] = {
    # synthesize: the source image
    "not NIfTI": (["synthesize", "{text}", "-o", "{out}", "--modality", "FLAIR"], "not a NIfTI"),
    "truncated": (["synthesize", "{truncated}", "-o", "{out}", "--modality", "PD"], "cannot"),
    "empty file": (["synthesize", "{empty}", "-o", "{out}", "--modality", "PD"], "cannot"),
    "folder as image": (["info", "{folder}"], "a folder, not an image file"),
    "2D": (["synthesize", "{2d}", "-o", "{out}", "--modality", "T2w"], "got 2D"),
    "4D": (["synthesize", "{4d}", "-o", "{out}", "--modality", "T2w"], "got 4D"),
    "all zero": (["synthesize", "{zeros}", "-o", "{out}", "--modality", "T2w"], "every voxel"),
    "NaN": (["synthesize", "{nan}", "-o", "{out}", "--modality", "T2w"], "NaN or infinite"),
    "sheared": (["synthesize", "{sheared}", "-o", "{out}", "--modality", "T2w"], "sheared"),
    "singular": (["info", "{singular}"], "singular"),
    "huge": (["info", "{huge}"], "8,589,934,592 voxels"),
    "missing image": (["synthesize", "{missing}", "-o", "{out}", "--modality", "PD"], "no such"),
    # synthesize: the output
    "no output folder": (
        ["synthesize", "{good}", "-o", "{no_folder_out}", "--modality", "PD"],
        "output folder does not exist",
    ),
    "output = input": (["synthesize", "{good}", "-o", "{good}", "--modality", "PD"], "the input"),
    "output = symlink": (["synthesize", "{good}", "-o", "{symlink}", "--modality", "PD"], "input"),
    "output = hard link": (
        ["synthesize", "{good}", "-o", "{hard_link}", "--modality", "PD"],
        "the input",
    ),
    "output not NIfTI": (["synthesize", "{good}", "-o", "{text}", "--modality", "PD"], ".nii"),
    "output in raw BIDS": (
        [
            "synthesize",
            "{good}",
            "-o",
            "{bids}/sub-01/anat/sub-01_FLAIR.nii.gz",
            "--modality",
            "FLAIR",
        ],
        "inside the raw BIDS data set",
    ),
    # synthesize: the target and options
    "malformed prompt": ([*SYNTH[:4], "--prompt", "Age: 3; Gender: F"], "lacks the field"),
    "over-long prompt": ([*SYNTH[:4], "--prompt", LONG_PROMPT], "tokens"),
    "unknown modality": ([*SYNTH[:4], "--modality", "DWI"], "unknown modality 'DWI'"),
    "TE >= TR": ([*SYNTH, "--tr", "200", "--te", "300"], "TE 300 ms must be shorter"),
    "negative voxel": ([*SYNTH, "--voxel-size", "-1", "1", "1"], "voxel_size"),
    "absurd voxel": ([*SYNTH, "--voxel-size", "0.001", "1", "1"], "voxel_size"),
    "bad patch size": ([*SYNTH, "--patch-size", "0"], "--patch-size 0: expected"),
    "bad precision": ([*SYNTH, "--precision", "fp16"], "invalid choice: 'fp16'"),
    "bad device": ([*SYNTH, "--device", "gpu"], "--device 'gpu': expected"),
    "missing checkpoint": ([*SYNTH, "--checkpoint", "{missing}"], "no such checkpoint"),
    "corrupt checkpoint": ([*SYNTH, "--checkpoint", "{corrupt}"], "not a safetensors"),
    "wrong-kind checkpoint": ([*SYNTH, "--checkpoint", "{synth_only}"], "needs a pipeline"),
    "pickle checkpoint": ([*SYNTH, "--checkpoint", "{evil}"], "convert-official"),
    # synthesize-bids
    "BIDS without images": (
        ["synthesize-bids", "{bids_no_images}", "--target", "FLAIR", "-o", "{full}/d"],
        "no sub-*/[ses-*/]anat/*_T1w",
    ),
    "derivatives in raw sub-*": (
        ["synthesize-bids", "{bids}", "--target", "FLAIR", "-o", "{bids}/sub-01/derived"],
        "inside the raw BIDS data set",
    ),
    "derivatives = BIDS root": (
        ["synthesize-bids", "{bids}", "--target", "FLAIR", "-o", "{bids}"],
        "is the BIDS folder itself",
    ),
    "bids bad option": (
        ["synthesize-bids", "{bids}", "--target", "FLAIR", "-o", "{full}/d", "--batch", "0"],
        "--batch 0: expected",
    ),
    # prompt and info
    "not DICOM": (["prompt", "--dicom", "{not_dicom}"], "not a readable DICOM"),
    "sidecar not JSON": (["prompt", "--sidecar", "{not_json}"], "not-json.json"),
    "missing sidecar": (["prompt", "--sidecar", "{missing}"], "missing.nii.gz"),
    # simulate
    "simulate into a full folder": (["simulate", "{full}", "--subjects", "1"], "not empty"),
    "simulate bad protocols": (
        ["simulate", "{full}/new", "--protocols", "{bad_protocols}"],
        "colour",
    ),
    # training
    "train unknown key": (["train", "{unknown_key}"], "colour"),
    "train wrong type": (["train", "{wrong_type}"], "steps"),
    "train-text missing config": (["train-text", "{missing}"], "missing.nii.gz"),
    "manifest leaves its folder": (["train", "{escape}"], "leaves the manifest's folder"),
    # evaluate
    "evaluate onto an input": (
        ["evaluate", "--pred", "{good}", "--truth", "{hard_link}", "--out", "{good}"],
        "is the input",
    ),
    "evaluate a missing truth": (
        ["evaluate", "--pred", "{good}", "--truth", "{missing}"],
        "no such",
    ),
    "evaluate a file against a folder": (
        ["evaluate", "--pred", "{good}", "--truth", "{full}"],
        "two files or two folders",
    ),
    # convert-official and montage
    "convert pickle": (["convert-official", "{evil}", "{full}/x.safetensors"], "evil.pth"),
    "convert onto source": (["convert-official", "{corrupt}", "{corrupt}"], "is the input"),
    "montage onto input": (["montage", "{good}", "{good}"], "ending in .png"),
    "montage missing image": (["montage", "{full}/m.png", "{missing}"], "no such file"),
}


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (links as their target) with its content hash."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    case: str, files: dict[str, Path], tmp_path: Path, capsys
) -> None:
    argv, message = CASES[case]
    argv = [argument.format(**files) for argument in argv]
    before = _snapshot(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own refusals (bad choices, missing arguments)
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err, err
    assert _snapshot(tmp_path) == before  # nothing written, nothing changed, nothing left behind


def _api_cases(files: dict[str, Path]) -> dict[str, Callable[..., object]]:
    brain = nib.load(files["good"])
    return {
        "array without affine": lambda s: s(brain.get_fdata(), "FLAIR"),
        "affine with a file": lambda s: s(files["good"], "FLAIR", affine=np.eye(4)),
        "3x3 affine": lambda s: s(brain.get_fdata(), "FLAIR", affine=np.eye(3)),
        "list as image": lambda s: s([[1, 2]], "FLAIR"),
        "unknown field": lambda s: s(brain, "FLAIR", echo=3),
        "no target": lambda s: s(brain),
        "target of a wrong type": lambda s: s(brain, 3.0),
        "2D array": lambda s: s(brain.get_fdata()[..., 0], "T2w", affine=brain.affine),
        "huge voxel grid": lambda s: s(
            np.ones((20, 20, 20)), "T2w", affine=np.diag([10, 10, 10, 1]), voxel_size=(0.1,) * 3
        ),
        "bad option": lambda s: s.with_options(overlap=64),
    }


API_CASES = {
    "array without affine": "needs its affine",
    "affine with a file": "an affine goes with an array",
    "3x3 affine": "finite 4x4 matrix",
    "list as image": "expected a NIfTI path, a nibabel image or an array",
    "unknown field": "unknown metadata field 'echo'",
    "no target": "say which contrast to make",
    "target of a wrong type": "got float",
    "2D array": "got 2D",
    "huge voxel grid": "voxels",
    "bad option": "overlap 64: expected less than the patch size 32",
}


@pytest.fixture(scope="module")
def synthesizer():
    from tumsyn import Synthesizer

    return Synthesizer.from_checkpoint(device="cpu")


@pytest.mark.parametrize("case", list(API_CASES), ids=list(API_CASES))
def test_python_api_raises_the_projects_error(case, files, tmp_path, synthesizer) -> None:
    before = _snapshot(tmp_path)
    with pytest.raises(TumsynError, match=API_CASES[case].replace("(", r"\(")):
        _api_cases(files)[case](synthesizer)
    assert _snapshot(tmp_path) == before


def test_options_are_checked_before_the_checkpoint_is_read(tmp_path: Path) -> None:
    from tumsyn import Synthesizer
    from tumsyn.errors import OptionError

    with pytest.raises(OptionError, match="patch_size 0"):
        Synthesizer.from_checkpoint(tmp_path / "missing.safetensors", patch_size=0)


def test_the_pickle_never_ran(files: dict[str, Path], capsys) -> None:
    for argv in (
        ["synthesize", str(files["good"]), "-o", str(files["out"]), "--modality", "PD",
         "--checkpoint", str(files["evil"])],
        ["convert-official", str(files["evil"]), str(files["full"] / "x.safetensors")],
    ):  # fmt: skip
        assert main(argv) == 2
    assert not (files["evil"].parent / "code-ran").exists()
    assert json.loads(json.dumps(capsys.readouterr().err))  # printed, not crashed
