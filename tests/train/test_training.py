"""Both training stages on a small simulated cohort: runs, exact resume, two gloo processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from helpers import TINY_SYNTH_SPEC
from tumsyn.cli import main
from tumsyn.infer.coverage import coverage_from_prompts
from tumsyn.infer.loading import bundled_checkpoint_path
from tumsyn.metadata import prompt_without_subject
from tumsyn.models import load_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.train import run


def test_stage1_writes_a_checkpoint_and_metrics(text_encoder: Path, steps: int) -> None:
    meta = read_checkpoint_metadata(text_encoder)
    assert meta["spec"]["name"] == "bmlip" and meta["extra"]["step"] == steps
    assert meta["extra"]["spacing"] == 12.0  # the text config's: retrieval prepares images so
    assert meta["extra"]["metrics"]["val_top1"] >= 0
    rows = (text_encoder.parent / "metrics.csv").read_text().splitlines()
    assert len(rows) == steps + 1 and "val_loss" in rows[0]


def test_stage1_with_prompt_augmentation_resumes_exactly(text_config, steps, tmp_path) -> None:
    augmentation = {"prompt_augmentation": {"voxel_size": [0.7, 3.0], "subject_dropout": 0.5}}
    whole = run(text_config(tmp_path, "whole", **augmentation), "text", progress=False)
    config = text_config(tmp_path, "resumed", **augmentation)
    assert run(config, "text", progress=False, stop_at=2).step == 2
    resumed = run(config, "text", progress=False, resume=True)
    first = load_file(str(whole.folder / "model.safetensors"))
    second = load_file(str(resumed.folder / "model.safetensors"))
    assert all(torch.equal(first[key], second[key]) for key in first)
    plain = run(text_config(tmp_path, "plain"), "text", progress=False)
    third = load_file(str(plain.folder / "model.safetensors"))
    assert not all(torch.equal(first[key], third[key]) for key in first)  # other prompts seen


def test_stage2_trains_on_the_frozen_text_encoder(synth_config, steps, tmp_path) -> None:
    config = synth_config(tmp_path, "synth")
    assert main(["train", str(config), "--quiet"]) == 0
    checkpoint = tmp_path / "synth" / "model.safetensors"
    model = load_checkpoint(checkpoint)
    meta = read_checkpoint_metadata(checkpoint)["extra"]
    assert meta["step"] == steps and meta["stage"] == "synthesis"
    assert {"val_psnr", "val_psnr_copy_source"} <= set(meta["metrics"])
    assert model.spec == read_checkpoint_metadata(checkpoint)["spec"]
    # A second run into the same folder is refused, not overwritten.
    assert main(["train", str(config), "--quiet"]) == 2


def test_stage2_with_subject_dropout_learns_prompts_without_age_and_sex(
    synth_config, tmp_path
) -> None:
    config = synth_config(tmp_path, "drop", subject_dropout=0.5)
    assert main(["train", str(config), "--quiet"]) == 0
    prompts = read_checkpoint_metadata(tmp_path / "drop" / "model.safetensors")["extra"]["prompts"]
    with_subject = [p for p in prompts if not p.startswith("Age: None; Gender: None")]
    assert with_subject and {prompt_without_subject(p) for p in with_subject} <= set(prompts)
    # Such a model's coverage no longer asks for age and sex.
    assert "age" not in coverage_from_prompts(prompts)["always_stated"]


def test_stage2_fine_tunes_from_a_checkpoints_network(synth_config, tmp_path, capsys) -> None:
    moving = {"optimizer": {"name": "adam", "lr": 1e-2}}
    assert main(["train", str(synth_config(tmp_path, "base", **moving)), "--quiet"]) == 0
    still = {"optimizer": {"name": "adam", "lr": 1e-12}}  # Adam moves each weight by about lr
    base = tmp_path / "base" / "model.safetensors"
    for name, settings in (("tuned", {"init": str(base), **still}), ("fresh", still)):
        assert main(["train", str(synth_config(tmp_path, name, **settings)), "--quiet"]) == 0
    weights = {name: dict(load_checkpoint(tmp_path / name / "model.safetensors").named_parameters())
               for name in ("base", "tuned", "fresh")}  # fmt: skip
    close = {name: all(torch.allclose(weights[name][key], value, atol=1e-6)
                       for key, value in weights["base"].items())
             for name in ("tuned", "fresh")}  # fmt: skip
    assert close == {"tuned": True, "fresh": False}
    # A fusion that extends the checkpoint's starts from it, its own parameters at zero.
    film = {"model": {"name": "synth", "args": {**TINY_SYNTH_SPEC["args"], "fusion": {
        **TINY_SYNTH_SPEC["args"]["fusion"], "kind": "voxel_film"}}}}  # fmt: skip
    extended = synth_config(tmp_path, "film", init=str(base), **still, **film)
    assert main(["train", str(extended), "--quiet"]) == 0
    tuned = dict(load_checkpoint(tmp_path / "film" / "model.safetensors").named_parameters())
    assert all(
        torch.allclose(tuned[key], value, atol=1e-6) for key, value in weights["base"].items()
    )
    assert tuned["fusion.to_scale_shift.weight"].abs().max() < 1e-6
    # ... but not the other way round: the plain fusion cannot hold the extension.
    reverse = synth_config(tmp_path, "reverse", init=str(tmp_path / "film" / "model.safetensors"))
    assert main(["train", str(reverse), "--quiet"]) == 2
    assert "holds a different architecture" in capsys.readouterr().err
    # Another architecture is refused in one line, before any training.
    other = synth_config(tmp_path, "other", init="tumsyn-tiny")
    assert main(["train", str(other), "--quiet"]) == 2
    assert "holds a different architecture" in capsys.readouterr().err
    assert not (tmp_path / "other" / "model.safetensors").exists()


def test_stage2_fine_tunes_one_network_of_the_shipped_routed_model(
    synth_config, tmp_path, capsys
) -> None:
    shipped = {"model": "tumsyn-tiny-film", "text_encoder": "tumsyn-v2", "init": "tumsyn-v2"}
    still = {"optimizer": {"name": "adam", "lr": 1e-12}}
    routed = load_checkpoint(bundled_checkpoint_path("tumsyn-v2")).synth
    unnamed = synth_config(tmp_path, "unnamed", **shipped)
    assert main(["train", str(unnamed), "--quiet"]) == 2
    keys = ", ".join(routed.networks)  # T1w, T2w, PD, T1w:FLAIR, ...
    assert f"({keys}); name one with init_network" in capsys.readouterr().err
    config = synth_config(tmp_path, "t2", init_network="t2w", **shipped, **still)
    assert main(["train", str(config), "--quiet"]) == 0
    tuned = dict(load_checkpoint(tmp_path / "t2" / "model.safetensors").named_parameters())
    assert all(torch.allclose(tuned[key], value, atol=1e-6)
               for key, value in routed.networks["T2w"].named_parameters())  # fmt: skip
    extra = read_checkpoint_metadata(tmp_path / "t2" / "model.safetensors")["extra"]
    assert extra["text_encoder"] == "tumsyn-v2"  # the shipped tower: the features it knows
    # A single network's checkpoint has no networks to name.
    single = synth_config(tmp_path, "single", init="tumsyn-tiny", init_network="T1w")
    assert main(["train", str(single), "--quiet"]) == 2
    assert "holds a single network; leave it out" in capsys.readouterr().err


def test_resume_continues_exactly(synth_config, steps, tmp_path) -> None:
    whole = run(synth_config(tmp_path, "whole"), "synthesis", progress=False)
    config = synth_config(tmp_path, "resumed")
    interrupted = run(config, "synthesis", progress=False, stop_at=4)
    assert interrupted.step == 4
    resumed = run(config, "synthesis", progress=False, resume=True)
    assert resumed.step == steps
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


def test_two_gloo_processes_end_with_identical_weights(synth_config, steps, tmp_path) -> None:
    config = synth_config(tmp_path, "ddp")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        "-m", "tumsyn.cli", "train", str(config), "--quiet",
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=300)
    assert result.returncode == 0, result.stderr[:3000]  # the ranks' own errors come first
    extra = read_checkpoint_metadata(tmp_path / "ddp" / "model.safetensors")["extra"]
    assert extra["world_size"] == 2 and extra["ranks_identical"] is True
    assert extra["step"] == steps
