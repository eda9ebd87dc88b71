"""Training killed outright (SIGKILL) and resumed ends bit for bit where an unbroken run ends.

A real kill lands wherever the process happens to be, so each stage is also killed right after its
first ``state.pt`` appears (often between that write and the ``model.safetensors`` beside it), and
the in-between moments a kill can leave are re-enacted file by file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tumsyn.train import run

RUN_FILES = {"model.safetensors", "state.pt", "metrics.csv"}
# Several checkpoints after the first, so that the kill falls while the run goes on.
KILLED_RUN = {"steps": 12, "checkpoint_every": 2, "validate_every": 4}
# One thread per process: the same arithmetic in every run, and two runs fit two cores.
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1"}
STAGES = {"train-text": "text_config", "train": "synth_config"}


def _command(stage: str, config: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "tumsyn.cli", stage, str(config), "--quiet", *more]


def _finish(process: subprocess.Popen, log: Path) -> None:
    """Wait for a run that must succeed; its error output is the failure message."""
    assert process.wait(timeout=120) == 0, log.read_text()[-2000:]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(command, env=ENVIRONMENT, stdout=handle, stderr=handle)


def _kill_after_first_checkpoint(command: list[str], folder: Path, log: Path) -> None:
    """Start a run and SIGKILL it as soon as its first ``state.pt`` exists."""
    process = _start(command, log)
    deadline = time.monotonic() + 90
    while not (folder / "state.pt").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no checkpoint before the run ended: {log.read_text()[-2000:]}")
        time.sleep(0.002)
    process.kill()
    assert process.wait(timeout=30) == -signal.SIGKILL, "the run ended before the kill"


def _killed_at(folder: Path) -> int:
    return int(torch.load(folder / "state.pt", weights_only=True)["position"][0])


def _assert_same_run(first: Path, second: Path) -> None:
    """Bit-identical weights, the same losses step by step, and no half-written file left."""
    weights = [load_file(str(folder / "model.safetensors")) for folder in (first, second)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    rows = [(folder / "metrics.csv").read_text().splitlines() for folder in (first, second)]
    assert [row.split(",")[:3] for row in rows[0]] == [row.split(",")[:3] for row in rows[1]]
    names = {path.name for path in second.iterdir()}
    assert names >= RUN_FILES
    assert not [name for name in names if name.startswith(".")]


@pytest.mark.parametrize("stage", STAGES)
def test_a_killed_run_resumes_to_the_same_weights(stage, request, tmp_path) -> None:
    write_config = request.getfixturevalue(STAGES[stage])
    whole = _start(
        _command(stage, write_config(tmp_path, "whole", **KILLED_RUN)), tmp_path / "whole.log"
    )
    config = write_config(tmp_path, "killed", **KILLED_RUN)
    killed = tmp_path / "killed"
    _kill_after_first_checkpoint(_command(stage, config), killed, tmp_path / "killed.log")
    assert _killed_at(killed) < KILLED_RUN["steps"]
    resumed = _start(_command(stage, config, "--resume"), tmp_path / "resumed.log")
    _finish(resumed, tmp_path / "resumed.log")
    _finish(whole, tmp_path / "whole.log")
    _assert_same_run(tmp_path / "whole", killed)


@pytest.fixture(scope="module")
def whole_synthesis(synth_config, tmp_path_factory) -> Path:
    """An unbroken stage-2 run (in this process, as the re-enacted kills run)."""
    folder = tmp_path_factory.mktemp("unbroken")
    return run(synth_config(folder, "whole"), "synthesis", progress=False).folder


@pytest.mark.parametrize(
    "behind",
    [("model.safetensors",), ("model.safetensors", "state.pt")],
    ids=["between-state-and-weights", "between-metrics-and-state"],
)
def test_a_kill_inside_a_checkpoint_resumes_exactly(
    behind, whole_synthesis, synth_config, tmp_path
) -> None:
    """The files a kill part-way through the checkpoint of step 4 leaves, then a resume."""
    config = synth_config(tmp_path, "killed")
    folder = tmp_path / "killed"
    run(config, "synthesis", progress=False, stop_at=2)
    earlier = {name: (folder / name).read_bytes() for name in behind}
    run(config, "synthesis", progress=False, resume=True, stop_at=4)
    for name, content in earlier.items():
        (folder / name).write_bytes(content)
    (folder / ".model.safetensors.k1ll3d.safetensors").write_bytes(b"half a file")
    run(config, "synthesis", progress=False, resume=True)
    _assert_same_run(whole_synthesis, folder)
