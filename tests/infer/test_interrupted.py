"""``tumsyn synthesize`` and ``tumsyn synthesize-bids`` killed outright (SIGKILL), then run again.

A kill lands wherever the process is, and no clean-up runs. What must hold whatever the moment:
no image under its final name is cut short (every file is written under a temporary name and
renamed), the same command run again ends with exactly what an unbroken run writes, and nothing
of the killed run stays behind (its temporaries are cleared by the next run). ``synthesize`` is
killed in the middle of its patches and as its output file is being written; ``synthesize-bids``
once its first output is complete.

Every run is a real ``tumsyn`` process with one thread, so that all runs do the same arithmetic
and an unbroken run goes on beside the killed one on the second core.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tumsyn.cli import main

TUMSYN = Path(sys.executable).with_name("tumsyn")
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}
FAST = ["--patch-size", "16", "--overlap", "4", "--device", "cpu"]
TIMEOUT = 120
# 40^3 voxels in 16^3 patches that overlap by 4: 27 patches, 7 batches of 4 (about a second on
# one core), so a kill after the second batch leaves most of the work undone.
SYNTHESIS_SHAPE = (40, 40, 40)
OUTPUT = "flair.nii.gz"
# 24^3 voxels: two batches per subject, so three subjects are left when the first is done.
BIDS_SHAPE = (24, 24, 24)
SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04")
FLAIRS = [f"{subject}/anat/{subject}_desc-tumsyn_FLAIR.nii.gz" for subject in SUBJECTS]


def _image(path: Path, shape: tuple[int, int, int], seed: int) -> Path:
    """An ellipsoid 'head' of random texture on a zero background, at 2 mm."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    radius = (((grid - centre[:, None, None, None]) / (0.4 * shape[0])) ** 2).sum(axis=0)
    texture = np.random.default_rng(seed).random(shape)
    data = np.where(radius <= 1, 100 + 30 * texture, 0).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return path


def _start(command: list[str | Path], log: Path) -> subprocess.Popen:
    """A run in the background, its printed text (stdout and stderr) going to ``log``."""
    with log.open("w") as handle:
        return subprocess.Popen(
            [str(part) for part in command],
            env=ENVIRONMENT,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def _finish(process: subprocess.Popen, log: Path) -> str:
    """Wait for a run that must succeed and return what it printed (the failure message)."""
    assert process.wait(timeout=TIMEOUT) == 0, log.read_text()[-2000:]
    return log.read_text()


def _kill_when(command: list[str | Path], log: Path, ready: Callable[[], bool], what: str) -> int:
    """Start a run, SIGKILL it as soon as ``ready()`` holds, and return its (now dead) PID.

    A run that ends before the kill fails the test: it would prove nothing about interruption.
    """
    process = _start(command, log)
    deadline = time.monotonic() + TIMEOUT
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before {what}: {log.read_text()[-2000:]}")
        time.sleep(0.001)
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL, f"the run ended before the kill ({what})"
    return process.pid


class Unbroken:
    """An uninterrupted run, started when made and waited for when its output is first needed,
    so that it runs beside the killed one."""

    def __init__(self, command: list[str | Path], output: Path, log: Path) -> None:
        self.output, self.log = output, log
        self.process = _start(command, log)

    def result(self) -> Path:
        _finish(self.process, self.log)
        return self.output

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def _voxels(path: Path) -> np.ndarray:
    """Every voxel of an image: reading them all fails on a file that is cut short."""
    return np.asarray(nib.load(path).dataobj)


def _sidecar(image: Path) -> Path:
    return image.with_name(image.name.replace(".nii.gz", ".json"))


def _temporaries(folder: Path) -> list[Path]:
    """Dot-files anywhere under ``folder``: what an unfinished atomic write leaves."""
    return sorted(folder.rglob(".*"))


def _assert_whole_or_absent(image: Path, reference: Path) -> None:
    """An image under its final name holds the unbroken run's voxels, all of them."""
    if image.exists():
        assert np.array_equal(_voxels(image), _voxels(reference))


def _assert_same_outputs(folder: Path, reference: Path, names: list[str]) -> None:
    """The images (voxels and affine) and sidecars of an unbroken run, and no temporary."""
    for name in names:
        made, expected = nib.load(folder / name), nib.load(reference / name)
        assert np.array_equal(np.asarray(made.dataobj), np.asarray(expected.dataobj)), name
        assert np.array_equal(made.affine, expected.affine)
        content = json.loads(_sidecar(folder / name).read_text())
        assert content == json.loads(_sidecar(reference / name).read_text())
    assert _temporaries(folder) == []


def _leave_temporary(path: Path, pid: int) -> Path:
    """The half-written temporary a writer of ``path`` killed with PID ``pid`` leaves beside it."""
    temporary = path.with_name(f".{path.name}.{pid}-k1ll3d{path.suffix}")
    temporary.write_bytes(b"\x1f\x8b half a file")
    return temporary


def _dead_pid() -> int:
    """The PID of a process that has ended (a killed writer's, as temporaries name it)."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


# --- tumsyn synthesize ---------------------------------------------------------------------


def _synthesize(source: Path, output: Path) -> list[str | Path]:
    return [TUMSYN, "synthesize", source, "-o", output, "--modality", "FLAIR", *FAST]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _image(tmp_path_factory.mktemp("source") / "t1w.nii.gz", SYNTHESIS_SHAPE, seed=0)


@pytest.fixture(scope="module")
def unbroken(source: Path, tmp_path_factory) -> Iterator[Unbroken]:
    folder = tmp_path_factory.mktemp("unbroken")
    run = Unbroken(_synthesize(source, folder / OUTPUT), folder, folder.parent / "unbroken.log")
    yield run
    run.stop()


def _batches_done(log: Path) -> int:
    """The most patch batches the progress bar has shown (``synthesize: 71%|... 5/7 [...]``)."""
    return max(map(int, re.findall(r"synthesize: .*?\| *(\d+)/\d+ \[", log.read_text())), default=0)


@pytest.mark.parametrize("moment", ["computing", "writing"])
def test_a_killed_synthesis_run_again_gives_the_unbroken_output(
    moment: str, source: Path, unbroken: Unbroken, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    command = _synthesize(source, folder / OUTPUT)
    killed_log = tmp_path / "killed.log"
    if moment == "computing":
        ready = lambda: _batches_done(killed_log) >= 2  # noqa: E731
    else:  # the output's temporary exists: the image is being written
        ready = lambda: any(p.name.startswith(f".{OUTPUT}.") for p in folder.iterdir())  # noqa: E731
    pid = _kill_when(command, killed_log, ready, f"the kill while {moment}")
    if moment == "computing":
        assert list(folder.iterdir()) == [], "a file appeared before the patches were done"
    reference = unbroken.result()
    _assert_whole_or_absent(folder / OUTPUT, reference / OUTPUT)
    # Whatever the kill left, and what it leaves at worst: half an image and half a sidecar.
    _leave_temporary(folder / OUTPUT, pid)
    _leave_temporary(_sidecar(folder / OUTPUT), pid)

    printed = _finish(_start(command, tmp_path / "again.log"), tmp_path / "again.log")
    assert f"wrote {folder / OUTPUT}" in printed
    _assert_same_outputs(folder, reference, [OUTPUT])
    assert sorted(p.name for p in folder.iterdir()) == ["flair.json", OUTPUT]


# --- tumsyn synthesize-bids ----------------------------------------------------------------


def _synthesize_bids(root: Path, out: Path) -> list[str | Path]:
    return [TUMSYN, "synthesize-bids", root, "--target", "FLAIR", "-o", out, *FAST, "--quiet"]


@pytest.fixture(scope="module")
def bids_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupted_bids") / "bids"
    for seed, subject in enumerate(SUBJECTS):
        _image(root / subject / "anat" / f"{subject}_T1w.nii.gz", BIDS_SHAPE, seed)
    description = {"Name": "four", "BIDSVersion": "1.9.0"}
    (root / "dataset_description.json").write_text(json.dumps(description))
    return root


@pytest.fixture(scope="module")
def unbroken_bids(bids_root: Path, tmp_path_factory) -> Iterator[Unbroken]:
    out = tmp_path_factory.mktemp("unbroken_bids") / "derivatives"
    run = Unbroken(_synthesize_bids(bids_root, out), out, out.parent / "unbroken.log")
    yield run
    run.stop()


def _complete(out: Path) -> list[str]:
    """The outputs whose image and sidecar both exist: those a rerun skips."""
    return [name for name in FLAIRS if (out / name).exists() and _sidecar(out / name).exists()]


def test_a_killed_bids_run_resumes_where_it_stopped(
    bids_root: Path, unbroken_bids: Unbroken, tmp_path: Path
) -> None:
    out = tmp_path / "derivatives"
    command = _synthesize_bids(bids_root, out)

    def first_output_done() -> bool:
        return any(not p.name.startswith(".") for p in out.glob("sub-*/anat/*.json"))

    _kill_when(command, tmp_path / "killed.log", first_output_done, "its first output")
    done = _complete(out)
    assert 1 <= len(done) < len(FLAIRS)
    reference = unbroken_bids.result()
    for name in FLAIRS:
        _assert_whole_or_absent(out / name, reference / name)
    before = {name: (out / name).stat().st_mtime_ns for name in done}

    printed = _finish(_start(command, tmp_path / "again.log"), tmp_path / "again.log")
    left = len(FLAIRS) - len(done)
    assert f"4 images: wrote {left}, skipped {len(done)} existing" in printed
    assert {name: (out / name).stat().st_mtime_ns for name in done} == before  # not redone
    _assert_same_outputs(out, reference, FLAIRS)
    description = json.loads((out / "dataset_description.json").read_text())
    assert description == json.loads((reference / "dataset_description.json").read_text())


def test_a_rerun_clears_what_a_killed_overwrite_left(
    bids_root: Path, unbroken_bids: Unbroken, tmp_path: Path, capsys
) -> None:
    """A run with ``--overwrite`` killed while rewriting leaves temporaries beside complete
    outputs; a rerun without it skips those outputs, and must clear them all the same."""
    out = shutil.copytree(unbroken_bids.result(), tmp_path / "derivatives")
    pid = _dead_pid()
    image = out / FLAIRS[2]
    for path in (image, _sidecar(image), out / "dataset_description.json"):
        _leave_temporary(path, pid)
    # In this process: every output exists, so no model is loaded.
    assert main(["synthesize-bids", str(bids_root), "--target", "FLAIR", "-o", str(out), *FAST,
                 "--quiet"]) == 0  # fmt: skip
    assert "wrote 0, skipped 4 existing" in capsys.readouterr().out
    assert _temporaries(out) == []
