"""Both training stages on a small simulated cohort: runs, exact resume, two gloo processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tumsyn.cli import main
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.metadata import load_protocols, prompt_without_subject
from tumsyn.models import load_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.simulate import CohortSettings, simulate_dataset
from tumsyn.train import run

# Models far smaller than the tiny configs, so that a few steps take seconds.
BMLIP_SPEC = {
    "name": "bmlip",
    "args": {
        "embed_dim": 16,
        "text": {"context_length": 90, "vocab_size": 49408, "width": 16, "layers": 1, "heads": 2},
        "vision": {"kind": "vit", "input_size": 16, "patch_size": 8, "width": 16, "layers": 1,
                   "heads": 2, "mlp_dim": 32},
    },
}  # fmt: skip
SYNTH_SPEC = {
    "name": "synth",
    "args": {
        "encoder": {"features": 4, "blocks": 1, "out_channels": 8},
        "fusion": {"kind": "voxel", "heads": 2, "mlp_ratio": 2.0},
        "decoder": {"kind": "liif", "hidden": [16]},
        "text_dim": 16,
    },
}
STEPS = 6


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    protocols = [
        p for p in load_protocols("default") if p.metadata.modality in ("T1w", "T2w", "FLAIR")
    ]
    return simulate_dataset(
        root / "sim", CohortSettings(subjects=3, seed=2), protocols, voxel_size=(6, 6, 6),
        progress=False,
    )  # fmt: skip


def _write(path: Path, content: dict) -> Path:
    path.write_text(yaml.safe_dump(content))
    return path


def _common(cohort: Path, out: Path) -> dict:
    return {
        "data": {"source": str(cohort), "cache": str(out.parent / "cache"),
                 "validation_fraction": 0.34},
        "steps": STEPS, "batch_size": 2, "validate_every": 3, "checkpoint_every": 3,
        "seed": 0, "out": str(out),
    }  # fmt: skip


@pytest.fixture(scope="module")
def text_encoder(cohort, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stage1")
    config = _write(
        folder / "bmlip.yaml",
        {"model": BMLIP_SPEC, "spacing": 12.0, **_common(cohort, folder / "run")},
    )
    assert main(["train-text", str(config), "--quiet"]) == 0
    return folder / "run" / "model.safetensors"


def _synth_config(
    cohort: Path, text_encoder: Path, folder: Path, name: str, **more: object
) -> Path:
    settings = {
        "model": SYNTH_SPEC, "text_encoder": str(text_encoder), "patch_size": 8, "queries": 64,
        "validation_patches": 2, **_common(cohort, folder / name), **more,
    }  # fmt: skip
    return _write(folder / f"{name}.yaml", settings)


def test_stage1_writes_a_checkpoint_and_metrics(text_encoder: Path) -> None:
    meta = read_checkpoint_metadata(text_encoder)
    assert meta["spec"]["name"] == "bmlip" and meta["extra"]["step"] == STEPS
    assert meta["extra"]["metrics"]["val_top1"] >= 0
    rows = (text_encoder.parent / "metrics.csv").read_text().splitlines()
    assert len(rows) == STEPS + 1 and "val_loss" in rows[0]


def test_stage2_trains_on_the_frozen_text_encoder(cohort, text_encoder, tmp_path) -> None:
    config = _synth_config(cohort, text_encoder, tmp_path, "synth")
    assert main(["train", str(config), "--quiet"]) == 0
    checkpoint = tmp_path / "synth" / "model.safetensors"
    model = load_checkpoint(checkpoint)
    meta = read_checkpoint_metadata(checkpoint)["extra"]
    assert meta["step"] == STEPS and meta["stage"] == "synthesis"
    assert {"val_psnr", "val_psnr_copy_source"} <= set(meta["metrics"])
    assert model.spec == read_checkpoint_metadata(checkpoint)["spec"]
    # A second run into the same folder is refused, not overwritten.
    assert main(["train", str(config), "--quiet"]) == 2


def test_stage2_with_subject_dropout_learns_prompts_without_age_and_sex(
    cohort, text_encoder, tmp_path
) -> None:
    config = _synth_config(cohort, text_encoder, tmp_path, "drop", subject_dropout=0.5)
    assert main(["train", str(config), "--quiet"]) == 0
    prompts = read_checkpoint_metadata(tmp_path / "drop" / "model.safetensors")["extra"]["prompts"]
    with_subject = [p for p in prompts if not p.startswith("Age: None; Gender: None")]
    assert with_subject and {prompt_without_subject(p) for p in with_subject} <= set(prompts)
    # Such a model's coverage no longer asks for age and sex.
    assert "age" not in coverage_from_prompts(prompts)["always_stated"]


def test_resume_continues_exactly(cohort, text_encoder, tmp_path) -> None:
    whole = run(_synth_config(cohort, text_encoder, tmp_path, "whole"), "synthesis", progress=False)
    config = _synth_config(cohort, text_encoder, tmp_path, "resumed")
    interrupted = run(config, "synthesis", progress=False, stop_at=4)
    assert interrupted.step == 4
    resumed = run(config, "synthesis", progress=False, resume=True)
    assert resumed.step == STEPS
    first = load_file(str(whole.folder / "model.safetensors"))
    second = load_file(str(resumed.folder / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)
    losses = [(p / "metrics.csv").read_text().splitlines() for p in (whole.folder, resumed.folder)]
    assert [row.split(",")[:3] for row in losses[0]] == [row.split(",")[:3] for row in losses[1]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_end_with_identical_weights(cohort, text_encoder, tmp_path) -> None:
    config = _synth_config(cohort, text_encoder, tmp_path, "ddp")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "tumsyn.cli", "train", str(config), "--quiet",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    extra = read_checkpoint_metadata(tmp_path / "ddp" / "model.safetensors")["extra"]
    assert extra["world_size"] == 2 and extra["ranks_identical"] is True
    assert extra["step"] == STEPS
