"""The published TUMSyn release in ``tumsyn synthesize``: ``convert-official --text``.

Real files on disk in the official nested formats (``torch.save``): a stage-2 ``checkpoint.pt``
with the real ``official-synth`` shapes (113M parameters) and a small stage-1 ``checkpoint_CLIP.pt``
with the official key layout (a narrow text tower and a tiny image tower, the same names).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import DATA, ISSUE_FLAIR, fill_deterministic_
from tumsyn.cli import main
from tumsyn.errors import ConfigError
from tumsyn.infer import SynthesisOptions, Synthesizer
from tumsyn.metadata import format_prompt
from tumsyn.models import build, save_checkpoint
from tumsyn.models.official import _is_text_key, convert_official
from tumsyn.models.registry import load_config
from tumsyn.text import tokenize

PROMPT = format_prompt(ISSUE_FLAIR)
# The official layout with a narrow text tower (width 64, 2 layers, the official 8 heads) and a
# tiny image tower; embed_dim is the official 768, which official-synth takes.
SMALL_CLIP = {
    "name": "bmlip",
    "args": {
        "embed_dim": 768,
        "text": {"width": 64, "layers": 2, "heads": 8},
        "vision": {"kind": "resnet", "input_size": 32, "layers": [1, 1, 1, 1], "width": 8},
    },
}


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict:
    """The two official files, as the official training scripts save them, and their models."""
    folder = tmp_path_factory.mktemp("release")
    with torch.device("meta"):
        synth = build("official-synth")
    fill_deterministic_(synth)
    spec = {"name": "lccd", "args": {"encoder_spec": {"name": "resencoder-256"}, "no_imnet": False}}
    synth_path = folder / "checkpoint.pt"
    torch.save({"model_G": {**spec, "sd_G": synth.state_dict()}, "epoch": 300}, synth_path)
    torch.manual_seed(0)
    clip = build(SMALL_CLIP).eval()
    optimizer = torch.optim.Adam(clip.parameters())
    clip_path = folder / "checkpoint_CLIP.pt"
    torch.save(
        {
            "epoch": 10,
            "global_step": 1000,
            "model_state_dict": clip.state_dict(),
            "optimizer_state_dict": optimizer.state_dict(),
        },
        clip_path,
    )
    pipeline_path = folder / "tumsyn-official.safetensors"
    convert_official(synth_path, pipeline_path, text=clip_path)
    return {
        "synth": synth_path,
        "clip": clip_path,
        "pipeline": pipeline_path,
        "synth_model": synth.eval(),
        "clip_model": clip,
    }


@pytest.fixture(scope="module")
def loaded(release):
    """The converted pipeline, loaded as ``tumsyn synthesize`` loads it: ``(pipeline, meta)``."""
    synthesizer = Synthesizer.from_checkpoint(release["pipeline"], device="cpu")
    return synthesizer.pipeline, synthesizer.meta


def test_official_text_keys_are_the_text_encoder_keys() -> None:
    # Real official shapes (shared/reference): the text part of the CLIP state dict is exactly the
    # state dict of the official-size text tower, name for name.
    official = json.loads((DATA / "official_bmlip_keys.json").read_text(encoding="utf-8"))
    text = {key: shape for key, shape in official.items() if _is_text_key(key)}
    with torch.device("meta"):
        tower = build({"name": "text", "args": {}})
    assert text == {key: list(value.shape) for key, value in tower.state_dict().items()}
    assert set(official) - set(text) == {"logit_scale"} | {
        key for key in official if key.startswith("visual.")
    }


def test_converted_pipeline_has_the_source_weights_and_text_features(release, loaded) -> None:
    pipeline, meta = loaded
    assert pipeline.pooled_text  # official fusion: the pooled prompt vector
    assert meta["spec"]["args"]["synth"] == load_config("official-synth")
    assert meta["spec"]["args"]["text"]["args"] == {
        "context_length": 90, "vocab_size": 49408, "width": 64, "layers": 2, "heads": 8,
        "embed_dim": 768,
    }  # fmt: skip
    assert meta["extra"]["converted_from"] == {
        "synth": "checkpoint.pt",
        "text": "checkpoint_CLIP.pt",
    }
    assert meta["extra"]["input_normalisation"] == "official"  # the demo's percentile_clip
    recommended = meta["extra"]["patch_settings"]
    assert recommended == {"patch_size": 60, "overlap": 10}  # the demo's 60^3 patches
    chosen = SynthesisOptions(patch_size=48).with_recommendation(recommended)
    assert (chosen.patch_size, chosen.overlap) == (48, 10)
    synth_state = release["synth_model"].state_dict()
    for key, value in pipeline.synth.state_dict().items():
        assert torch.equal(value, synth_state[key]), key
    text, mask = pipeline.encode_prompt(PROMPT)
    with torch.no_grad():
        expected = release["clip_model"].encode_text(tokenize(PROMPT))
    assert mask is None and text.shape == (1, 768)
    assert torch.equal(text, expected)


def test_converted_pipeline_synthesizes_as_the_source_network(release, loaded) -> None:
    pipeline, _ = loaded
    generator = torch.Generator().manual_seed(1)
    patch = torch.rand(1, 1, 8, 8, 8, generator=generator)
    coord = torch.rand(1, 50, 3, generator=generator) * 2 - 1
    cell = torch.full_like(coord, 2 / 8)
    with torch.no_grad():
        ours = pipeline.predictor(PROMPT)(patch, coord, cell)
        text = release["clip_model"].encode_text(tokenize(PROMPT))
        expected = release["synth_model"](patch, coord, text, cell=cell)
    assert torch.equal(ours, expected)


def test_synthesize_runs_with_the_converted_release(release, write_nifti, tmp_path, capsys):
    data = np.zeros((8, 8, 8), dtype=np.float32)
    data[1:7, 1:7, 1:7] = np.linspace(50, 150, 216).reshape(6, 6, 6)
    source = write_nifti(data, "sub-01_T1w.nii.gz")
    out = tmp_path / "sub-01_FLAIR.nii.gz"
    code = main([
        "synthesize", str(source), "-o", str(out), "--prompt", PROMPT, "--voxel-size", "1", "1",
        "1", "--checkpoint", str(release["pipeline"]), "--patch-size", "8", "--overlap", "2",
        "--device", "cpu", "--quiet",
    ])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    sidecar = json.loads(out.with_name("sub-01_FLAIR.json").read_text())
    assert sidecar["SynthesisModel"] == "official TUMSyn (checkpoint.pt + checkpoint_CLIP.pt)"
    assert out.is_file()


def test_cli_conversion_and_errors(release, write_nifti, tmp_path, capsys) -> None:
    target = tmp_path / "pipeline.safetensors"
    code = main(["convert-official", str(release["synth"]), str(target),
                 "--text", str(release["clip"])])  # fmt: skip
    assert code == 0
    assert f"tumsyn synthesize --checkpoint {target}" in capsys.readouterr().out

    # A lone official .pth given to synthesize: one line naming the command to run.
    source = write_nifti(np.ones((4, 4, 4)), "t1.nii.gz")
    code = main(["synthesize", str(source), "-o", str(tmp_path / "o.nii.gz"),
                 "--modality", "T2w", "--voxel-size", "1", "1", "1",
                 "--checkpoint", str(release["synth"])])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "tumsyn convert-official checkpoint.pt OUT.safetensors --text checkpoint_CLIP.pt" in err

    # The two files swapped, or the same file twice: refused before building anything.
    for source, text in ((release["clip"], release["synth"]), (release["synth"], release["synth"])):
        code = main(["convert-official", str(source), str(tmp_path / "x.safetensors"),
                     "--text", str(text)])  # fmt: skip
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "official" in err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_synthesis_network_alone_is_refused_by_synthesize(release, tmp_path) -> None:
    # What ``convert-official checkpoint.pt OUT`` (no --text) writes: a synth checkpoint.
    alone = save_checkpoint(tmp_path / "synth.safetensors", release["synth_model"])
    with pytest.raises(ConfigError, match="--text checkpoint_CLIP.pt"):
        Synthesizer.from_checkpoint(alone, device="cpu")
