"""safetensors checkpoints, official .pth files and their conversion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tumsyn.cli import main
from tumsyn.errors import ConfigError, InputFileError
from tumsyn.models import build
from tumsyn.models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from tumsyn.models.liif import cell_centres
from tumsyn.models.official import load_official, official_state_dict


def _inputs(text_dim: int, tokens: bool):
    torch.manual_seed(5)
    image = torch.randn(1, 1, 5, 4, 6)
    coord = cell_centres((7, 6, 9))[None]
    text = torch.randn(1, 3, text_dim) if tokens else torch.randn(1, text_dim)
    return image, coord, text, torch.full_like(coord, 2 / 7)


def _run(model, inputs) -> torch.Tensor:
    image, coord, text, cell = inputs
    with torch.no_grad():
        return model.eval()(image, coord, text, cell=cell)


def test_safetensors_round_trip_rebuilds_the_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build("tumsyn-tiny")
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, extra={"step": 3})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600
    meta = read_checkpoint_metadata(path)
    assert meta["spec"] == model.spec and meta["extra"] == {"step": 3}
    loaded = load_checkpoint(path)
    inputs = _inputs(128, tokens=True)
    assert torch.equal(_run(loaded, inputs), _run(model, inputs))
    assert not any(p.is_meta for p in loaded.parameters())


def _official_file(path: Path, model: torch.nn.Module, *, prefix: str = "") -> Path:
    """An official-format stage-2 checkpoint, laid out as the official training script saves it."""
    state = {prefix + key: value for key, value in model.state_dict().items()}
    spec = {"name": "lccd", "args": {"encoder_spec": {"name": "resencoder-256"}, "no_imnet": False}}
    torch.save({"model_G": {**spec, "sd_G": state}, "optimizer_G": {}, "epoch": 300}, path)
    return path


@pytest.fixture(scope="module")
def official_model():
    torch.manual_seed(1)
    return build("official-synth").eval()


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_pth_converts_to_identical_outputs(
    tmp_path: Path, official_model, prefix: str, capsys
) -> None:
    source = _official_file(tmp_path / "checkpoint.pth", official_model, prefix=prefix)
    target = tmp_path / "official.safetensors"
    assert main(["convert-official", str(source), str(target)]) == 0
    assert str(target) in capsys.readouterr().out
    inputs = _inputs(768, tokens=False)
    expected = _run(official_model, inputs)
    assert torch.equal(_run(load_official(source), inputs), expected)
    assert torch.equal(_run(load_checkpoint(target), inputs), expected)


class NotWeights:
    """Any object that is not a tensor or a plain container: unpickling it could run code."""


def test_pickled_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": NotWeights()}, path)
    with pytest.raises(ConfigError, match="read safely"):
        official_state_dict(path)


def test_unrecognised_and_missing_checkpoints(tmp_path: Path, capsys) -> None:
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(ConfigError, match="neither an official"):
        load_official(path)
    with pytest.raises(InputFileError):
        load_official(tmp_path / "missing.pth")
    not_safetensors = tmp_path / "x.safetensors"
    not_safetensors.write_bytes(b"garbage")
    assert main(["convert-official", str(tmp_path / "missing.pth"), str(tmp_path / "o")]) == 2
    with pytest.raises(ConfigError, match="not a safetensors checkpoint"):
        load_checkpoint(not_safetensors)
    assert "no such checkpoint" in capsys.readouterr().err
