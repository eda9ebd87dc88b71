"""``tumsyn synthesize-bids`` on a tiny BIDS data set with the bundled model (16^3 images at 2 mm).

Every test reads and writes real NIfTI files; the main run happens once (module fixture) and the
tests that change outputs work on copies.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
import pytest
import torch

from tumsyn import __version__
from tumsyn.cli import main
from tumsyn.distributed import World
from tumsyn.infer import SynthesisOptions
from tumsyn.infer.bids import derivative_name, find_sources, synthesize_bids

FAST = ["--patch-size", "16", "--overlap", "4"]
SHAPE = (16, 16, 16)
VOXEL = 2.0
# The three T1w images (no contrast agent), one per subject/session, and their FLAIR outputs.
SOURCES = [
    "sub-01/anat/sub-01_T1w.nii.gz",
    "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz",
    "sub-02/ses-2/anat/sub-02_ses-2_acq-fast_run-1_T1w.nii.gz",
]
FLAIRS = [
    "sub-01/anat/sub-01_desc-tumsyn_FLAIR.nii.gz",
    "sub-02/ses-1/anat/sub-02_ses-1_desc-tumsyn_FLAIR.nii.gz",
    "sub-02/ses-2/anat/sub-02_ses-2_acq-fast_run-1_desc-tumsyn_FLAIR.nii.gz",
]


class Run(NamedTuple):
    code: int
    out: str
    err: str


def run_cli(*argv: str | Path) -> Run:
    """``tumsyn ARGV`` in this process, with its exit code and printed text."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
    return Run(code, out.getvalue(), err.getvalue())


def _image(path: Path, seed: int) -> None:
    """An ellipsoid 'head' of random texture on a zero background."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.indices(SHAPE).astype(np.float32)
    centre = (np.asarray(SHAPE, dtype=np.float32) - 1) / 2
    radius = (((grid - centre[:, None, None, None]) / (0.4 * SHAPE[0])) ** 2).sum(axis=0)
    texture = np.random.default_rng(seed).random(SHAPE)
    data = np.where(radius <= 1, 100 + 30 * texture, 0).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([VOXEL, VOXEL, VOXEL, 1.0])), path)


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthesize_bids") / "bids"
    for seed, name in enumerate(SOURCES):
        _image(root / name, seed)
    _image(root / "sub-01/anat/sub-01_T2w.nii.gz", 10)
    _image(root / "sub-02/ses-1/anat/sub-02_ses-1_ce-gadolinium_T1w.nii.gz", 11)
    (root / "participants.tsv").write_text(
        "participant_id\tage\tsex\nsub-01\t70\tF\nsub-02\t30\tM\n"
    )
    description = {"Name": "tiny", "BIDSVersion": "1.9.0", "DatasetDOI": "doi:10.0/tiny"}
    (root / "dataset_description.json").write_text(json.dumps(description))
    return root


class Made(NamedTuple):
    root: Path
    out: Path
    run: Run


@pytest.fixture(scope="module")
def flair(bids_root: Path, tmp_path_factory) -> Made:
    out = tmp_path_factory.mktemp("flair") / "derivatives"
    run = run_cli("synthesize-bids", bids_root, "--target", "FLAIR", "-o", out, *FAST, "--quiet")
    return Made(bids_root, out, run)


def outputs(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nii.gz"))


def sidecar(image: Path) -> dict:
    return json.loads(image.with_name(image.name.replace(".nii.gz", ".json")).read_text())


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*.*")}


def test_every_subject_and_session_gets_an_output(flair: Made) -> None:
    assert flair.run.code == 0, flair.run.err
    assert "3 images: wrote 3, skipped 0 existing, failed 0" in flair.run.out
    assert outputs(flair.out) == FLAIRS  # neither the T2w nor the ce-gadolinium T1w is a source
    assert not [p for p in flair.out.rglob(".*")]  # no temporary files left behind
    for source, name in zip(SOURCES, FLAIRS, strict=True):
        image, reference = nib.load(flair.out / name), nib.load(flair.root / source)
        assert image.shape == SHAPE and np.allclose(image.affine, reference.affine)
        content = sidecar(flair.out / name)
        assert content["Sources"] == [f"bids:raw:{source}"]
        assert content["InversionTime"] == 1.8  # the packaged FLAIR protocol
        assert "Voxel size: (2.0, 2.0, 2.0)" in content["SynthesisPrompt"]
    # participants.tsv reaches the sidecar; the bundled model leaves age and sex out of its prompt
    first, last = sidecar(flair.out / FLAIRS[0]), sidecar(flair.out / FLAIRS[2])
    assert first["SynthesisPromptLeftOut"] == {"age": 70, "sex": "F"}
    assert last["SynthesisPromptLeftOut"] == {"age": 30, "sex": "M"}
    assert first["SynthesisPrompt"].startswith("Age: None; Gender: None;")
    assert "note: tumsyn-v2 leaves age and sex out of its prompts" in flair.run.err


def test_dataset_description(flair: Made) -> None:
    content = json.loads((flair.out / "dataset_description.json").read_text())
    assert content["DatasetType"] == "derivative" and content["BIDSVersion"] == "1.9.0"
    assert content["Name"] == "tumsyn synthesis: FLAIR from T1w (tiny)"
    (generated,) = content["GeneratedBy"]
    assert generated["Name"] == "tumsyn" and generated["Version"] == __version__
    assert "tumsyn-v2" in generated["Description"]
    uri = flair.root.resolve().as_uri()
    assert content["SourceDatasets"] == [{"URL": uri, "DOI": "doi:10.0/tiny"}]
    assert content["DatasetLinks"] == {"raw": uri}


def test_existing_outputs_are_skipped_unless_overwrite(flair: Made, tmp_path: Path) -> None:
    out = shutil.copytree(flair.out, tmp_path / "derivatives")
    for path in out.rglob("*.*"):
        os.utime(path, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    before = mtimes(out)
    again = run_cli("synthesize-bids", flair.root, "--target", "FLAIR", "-o", out, *FAST)
    assert again.code == 0
    assert "wrote 0, skipped 3 existing (--overwrite redoes them)" in again.out
    assert "3/3" in again.err  # the progress bar
    assert mtimes(out) == before

    # An image without its sidecar was interrupted between the two: it is made again.
    (out / FLAIRS[1].replace(".nii.gz", ".json")).unlink()
    redo = run_cli("synthesize-bids", flair.root, "--target", "FLAIR", "-o", out, *FAST, "--quiet")
    assert "wrote 1, skipped 2 existing" in redo.out
    changed = {name for name, time in mtimes(out).items() if time != before.get(name)}
    assert changed == {FLAIRS[1], FLAIRS[1].replace(".nii.gz", ".json")}

    forced = run_cli("synthesize-bids", flair.root, "--target", "FLAIR", "-o", out, *FAST,
                     "--quiet", "--overwrite")  # fmt: skip
    assert forced.code == 0 and "wrote 3, skipped 0 existing" in forced.out
    after = mtimes(out)
    assert all(after[name] != before[name] for name in before)  # dataset_description.json too


def test_source_suffix(bids_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pd"
    made = run_cli("synthesize-bids", bids_root, "--source", "T2w", "--target", "PD", "-o", out,
                   *FAST, "--quiet")  # fmt: skip
    assert made.code == 0 and "1 image: wrote 1" in made.out
    assert outputs(out) == ["sub-01/anat/sub-01_desc-tumsyn_PDw.nii.gz"]
    content = sidecar(out / "sub-01/anat/sub-01_desc-tumsyn_PDw.nii.gz")
    assert content["Sources"] == ["bids:raw:sub-01/anat/sub-01_T2w.nii.gz"]
    assert "Modality: PD;" in content["SynthesisPrompt"]
    assert "from T2w" in json.loads((out / "dataset_description.json").read_text())["Name"]


def test_sources_by_modality_or_suffix(bids_root: Path) -> None:
    names = lambda paths: [p.relative_to(bids_root).as_posix() for p in paths]  # noqa: E731
    assert names(find_sources(bids_root)) == SOURCES
    assert names(find_sources(bids_root, source="T1CE")) == [
        "sub-02/ses-1/anat/sub-02_ses-1_ce-gadolinium_T1w.nii.gz"
    ]
    assert names(find_sources(bids_root, source="T2w")) == ["sub-01/anat/sub-01_T2w.nii.gz"]
    assert names(find_sources(bids_root, exclude=bids_root / "sub-02")) == SOURCES[:1]


@pytest.mark.parametrize(
    ("source", "modality", "expected"),
    [
        ("sub-01_T1w.nii.gz", "FLAIR", "sub-01_desc-tumsyn_FLAIR.nii.gz"),
        (
            "sub-01_ses-2_acq-fast_run-3_T1w.nii",
            "T2w",
            "sub-01_ses-2_acq-fast_run-3_desc-tumsyn_T2w.nii.gz",
        ),
        ("sub-01_ce-gadolinium_T1w.nii.gz", "T1w", "sub-01_desc-tumsyn_T1w.nii.gz"),
        ("sub-01_rec-norm_T1w.nii.gz", "T1CE", "sub-01_ce-gadolinium_desc-tumsyn_T1w.nii.gz"),
        (
            "sub-01_echo-1_part-mag_T2starw.nii.gz",
            "SWI",
            "sub-01_rec-swi_echo-1_part-mag_desc-tumsyn_T2starw.nii.gz",
        ),
    ],
)
def test_derivative_names(source: str, modality: str, expected: str) -> None:
    assert derivative_name(source, modality) == expected


def test_a_bad_image_fails_alone(bids_root: Path, tmp_path: Path) -> None:
    root = shutil.copytree(bids_root, tmp_path / "bids")
    (root / SOURCES[1]).write_bytes(b"not a NIfTI image")
    out = tmp_path / "derivatives"
    made = run_cli("synthesize-bids", root, "--target", "FLAIR", "-o", out, *FAST, "--quiet")
    assert made.code == 2
    lines = made.err.strip().splitlines()
    assert lines[-1] == (
        "tumsyn synthesize-bids: error: 1 of 3 images failed: sub-02_ses-1_T1w.nii.gz"
    )
    failed = f"tumsyn synthesize-bids: failed: {root / SOURCES[1]}: cannot be read as NIfTI"
    assert any(line.startswith(failed) for line in lines)
    assert "wrote 2, skipped 0 existing, failed 1" in made.out
    assert outputs(out) == [FLAIRS[0], FLAIRS[2]]
    assert not [p for p in out.rglob(".*")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "say which contrast to make: --target"),
        (["--target", "T9w"], "unknown modality"),
        (["--target", "FLAIR", "--tr", "100", "--te", "200"], "TE"),
        (["--target", "FLAIR", "--source", "T1map"], "no sub-*/[ses-*/]anat/*_T1map.nii[.gz]"),
        (["--target", "FLAIR", "--checkpoint", "none.safetensors"], "no such checkpoint"),
        (["--target", "FLAIR", "--patch-size", "16", "--overlap", "16"], "--overlap 16: expected"),
    ],
)
def test_bad_requests_exit_2_and_write_nothing(bids_root, tmp_path, arguments, message) -> None:
    out = tmp_path / "derivatives"
    made = run_cli("synthesize-bids", bids_root, "-o", out, *arguments)
    assert made.code == 2 and made.err.count("\n") == 1
    assert made.err.startswith("tumsyn synthesize-bids: error: ") and message in made.err
    assert not out.exists()


def test_help_has_examples() -> None:
    shown = run_cli("synthesize-bids", "--help")
    assert shown.code == 0 and "examples:" in shown.out and "torchrun" in shown.out
    assert "--target MODALITY, --modality MODALITY" in shown.out


def test_derivatives_never_go_into_the_raw_data(bids_root: Path, tmp_path: Path) -> None:
    made = run_cli("synthesize-bids", bids_root, "--target", "FLAIR", "-o", bids_root)
    assert made.code == 2 and "is the BIDS folder itself" in made.err
    missing = run_cli("synthesize-bids", tmp_path / "none", "--target", "FLAIR", "-o", tmp_path)
    assert missing.code == 2 and "no such BIDS folder" in missing.err


def test_rank_1_of_2_takes_every_other_image(bids_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "derivatives"
    summary = synthesize_bids(
        bids_root, out, "FLAIR", options=SynthesisOptions(patch_size=16, overlap=4),
        progress=False, world=World(rank=1, size=2, device=torch.device("cpu")),
    )  # fmt: skip
    assert (summary.jobs, summary.skipped, summary.failed) == (1, [], [])
    assert summary.written == [out / FLAIRS[1]] and outputs(out) == [FLAIRS[1]]
    assert not (out / "dataset_description.json").exists()  # rank 0 writes it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_shards_the_work(bids_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "derivatives"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "tumsyn.cli", "synthesize-bids", str(bids_root), "--target", "FLAIR", "-o", str(out),
        *FAST, "--quiet", "--device", "cpu",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    # Each image written exactly once: the ranks' counts add up and neither found one existing.
    assert "rank 0/2: 2 images: wrote 2, skipped 0 existing, failed 0" in result.stdout
    assert "rank 1/2: 1 image: wrote 1, skipped 0 existing, failed 0" in result.stdout
    assert outputs(out) == FLAIRS
    content = json.loads((out / "dataset_description.json").read_text())
    assert content["DatasetType"] == "derivative"
