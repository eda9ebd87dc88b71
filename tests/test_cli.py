"""The command line: exact outputs, and every user error as one line with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tumsyn.cli import COMMANDS, build_parser, main
from tumsyn.examples import example_root, example_t1w

FLAIR_FLAGS = [
    *("--modality", "FLAIR", "--tr", "9000", "--te", "81", "--ti", "2500", "--fa", "150"),
    *("--age", "70", "--sex", "F", "--field", "3", "--manufacturer", "Siemens"),
    *("--voxel-size", "1", "1", "3"),
]
FLAIR_PROMPT = (
    "Age: 70; Gender: F; Scanner: 3.0 Siemens; Modality: FLAIR; Voxel size: (1.0, 1.0, 3.0); "
    "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree): (9000.0, 81.0, 2500.0, 150.0)"
)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exit_:  # argparse's own errors and --help
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_prompt_from_flags_is_exact(capsys) -> None:
    assert run(capsys, "prompt", *FLAIR_FLAGS) == (0, FLAIR_PROMPT + "\n", "")


def test_prompt_text_is_checked_and_edited(capsys) -> None:
    code, out, _ = run(
        capsys, "prompt", "--text", FLAIR_PROMPT, "--modality", "PDw", "--ti", "3000"
    )
    assert code == 0
    assert "Modality: PD;" in out and "(9000.0, 81.0, 3000.0, 150.0)" in out


def test_prompt_from_sidecar_and_image_header(capsys, tmp_path: Path) -> None:
    bids = tmp_path / "bids"
    shutil.copytree(example_root(), bids)
    anat = bids / "sub-icbm152" / "anat"
    sidecar = anat / "sub-icbm152_T1w.json"
    image = anat / "sub-icbm152_T1w.nii.gz"
    (bids / "participants.tsv").write_text("participant_id\tage\tsex\nsub-icbm152\t25\tM\n")
    code, out, _ = run(
        capsys, "prompt", "--sidecar", str(sidecar), "--image", str(image), "--te", "9"
    )
    assert code == 0
    assert out.strip() == (
        "Age: 25; Gender: M; Scanner: 1.5 Philips; Modality: T1w; Voxel size: (2.0, 2.0, 2.0); "
        "Imaging parameter TR(ms), TE(ms), TI(ms), and FA(degree): (18.0, 9.0, None, 30.0)"
    )


def test_info_on_bundled_example(capsys) -> None:
    image = example_t1w()
    before = image.read_bytes()
    code, out, err = run(capsys, "info", str(image))
    assert (code, err) == (0, "")
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert fields["shape"].strip() == "79 x 97 x 81"
    assert fields["orientation"].strip() == "RAS"
    assert fields["voxel size"].strip() == "2 x 2 x 2 mm"
    assert fields["prompt"].strip().startswith("Age: None; Gender: None; Scanner: 1.5 Philips")
    assert fields["input modality"].strip() == "T1w (from the file name or sidecar)"
    assert image.read_bytes() == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("input_0000.nii.gz",
         "not named; the default model reads it with its fallback network, T1w (T1-like"),
        ("sub-01_T2star.nii.gz",  # the default model has no T2*w network
         "T2star (from the file name or sidecar), which has no network of its own; the default "
         "model reads it with its fallback network, T1w (T1-like"),
    ],
)  # fmt: skip
def test_info_says_how_an_input_the_model_has_no_network_for_would_be_read(
    capsys, tmp_path, name, expected
) -> None:
    image = tmp_path / name
    shutil.copyfile(example_t1w(), image)
    code, out, err = run(capsys, "info", str(image))
    assert (code, err) == (0, "")
    fields = dict(line.split(": ", 1) for line in out.strip().splitlines())
    assert fields["input modality"].strip().startswith(expected)


def test_version(capsys) -> None:
    code, out, _ = run(capsys, "version")
    assert code == 0 and out.startswith("tumsyn ") and "torch" in out


@pytest.fixture
def bad_files(tmp_path: Path, write_nifti, brain_like) -> dict[str, Path]:
    nan = brain_like.copy()
    nan[2, 2, 2] = np.nan
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image")
    sidecar = tmp_path / "sub-01_T1w.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 2300}))
    return {
        "4d": write_nifti(np.stack([brain_like] * 2, axis=-1), name="4d.nii.gz"),
        "empty": write_nifti(np.zeros((0, 3, 3)), name="empty.nii.gz"),
        "zeros": write_nifti(np.zeros((4, 4, 4)), name="zeros.nii.gz"),
        "nan": write_nifti(nan, name="nan.nii.gz"),
        "text": text,
        "sidecar_ms": sidecar,
        "missing": tmp_path / "missing.nii.gz",
    }


BAD_COMMANDS = {
    "4D image": (["info", "{4d}"], "expected a 3D image, got 4D"),
    "empty image": (["info", "{empty}"], "empty"),
    "all-zero image": (["info", "{zeros}"], "every voxel is zero"),
    "NaN image": (["info", "{nan}"], "NaN or infinite; fix the image or read them as 0"),
    "not NIfTI content": (["info", "{text}"], "cannot be read as NIfTI"),
    "missing file": (["info", "{missing}"], "no such file"),
    "unknown modality": (["prompt", "--modality", "DWI"], "unknown modality 'DWI'"),
    "TE >= TR": (["prompt", "--tr", "500", "--te", "600"], "TE 600 ms must be shorter"),
    "absurd TR": (["prompt", "--tr", "40000"], "tr 40000.0 ms is out of range"),
    "absurd voxel": (["prompt", "--voxel-size", "1", "1", "12"], "voxel_size 12.0 mm"),
    "absurd age": (["prompt", "--age", "150"], "age 150.0 years"),
    "malformed prompt": (["prompt", "--text", "Age: 3; Gender: F"], "lacks the field(s) 'Scanner'"),
    "two sources": (["prompt", "--text", "x", "--dicom", "y"], "only one of"),
    "not a number": (["prompt", "--tr", "fast"], "invalid float value: 'fast'"),
    "too few voxel sizes": (["prompt", "--voxel-size", "1", "1"], "expected 3 arguments"),
    "unknown command": (["synthesise"], "invalid choice"),
    "prompt too long": (
        ["prompt", "--text", FLAIR_PROMPT, "--voxel-size", "0.46875", "0.46875", "0.46875"],
        "needs 98 tokens",
    ),
}


@pytest.mark.parametrize("case", list(BAD_COMMANDS), ids=list(BAD_COMMANDS))
def test_user_errors_are_one_line_with_exit_code_2(capsys, bad_files, case: str) -> None:
    argv, message = BAD_COMMANDS[case]
    argv = [a.format(**bad_files) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
    assert "Traceback" not in err


def test_a_sidecar_in_ms_is_a_one_line_warning_not_an_error(capsys, bad_files) -> None:
    code, out, err = run(capsys, "prompt", "--sidecar", str(bad_files["sidecar_ms"]))
    assert code == 0 and "(2300.0, None, None, None)" in out
    assert err.count("\n") == 1 and err.startswith("tumsyn prompt: warning: ")
    assert "RepetitionTime" in err and "milliseconds" in err


def test_nan_to_zero_flag(capsys, bad_files) -> None:
    code, out, _ = run(capsys, "info", "--nan-to-zero", str(bad_files["nan"]))
    assert code == 0 and "shape:" in out


def test_debug_shows_the_exception(bad_files) -> None:
    from tumsyn.errors import ImageError

    with pytest.raises(ImageError):
        main(["--debug", "info", str(bad_files["zeros"])])


def test_console_script_in_a_real_process(bad_files) -> None:
    tumsyn = Path(sys.executable).with_name("tumsyn")
    ok = subprocess.run([tumsyn, "prompt", *FLAIR_FLAGS], capture_output=True, text=True)
    assert (ok.returncode, ok.stdout) == (0, FLAIR_PROMPT + "\n")
    bad = subprocess.run([tumsyn, "info", bad_files["4d"]], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.startswith("tumsyn info: error: ") and bad.stderr.count("\n") == 1


def test_every_command_has_help_with_an_example(capsys) -> None:
    commands = build_parser()._subparsers._group_actions[0].choices
    assert len(commands) == len(COMMANDS) == 14
    for command in commands:
        with pytest.raises(SystemExit) as exit:
            main([command, "--help"])
        out = capsys.readouterr().out
        assert exit.value.code == 0 and "examples:" in out and f"tumsyn {command}" in out


def test_top_level_help_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    out = capsys.readouterr().out
    commands = build_parser()._subparsers._group_actions[0].choices
    assert exit.value.code == 0 and all(command in out for command in commands)
    assert "95% interval" in out  # a literal percent sign in a command's help


def test_prompt_from_a_real_dicom_with_a_non_conforming_age(capsys) -> None:
    # nibabel ships this Siemens file; its PatientAge is "99", without the unit letter DICOM asks.
    import nibabel

    dicom = Path(nibabel.__file__).parent / "nicom" / "tests" / "data" / "decimal_rescale.dcm"
    code, out, err = run(capsys, "prompt", "--dicom", str(dicom))
    assert code == 0
    assert out.strip().endswith("(50.0, 2.5, 6376.0, 12.0)")
    assert err == (
        f"tumsyn prompt: warning: {dicom}: DICOM PatientAge '99' has no unit; read as 99 years\n"
    )
