"""scripts/package_release.py: stage-2 runs bundled into a routed model, and a routed model
extended by a network fine-tuned from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tumsyn import Synthesizer
from tumsyn.cli import main
from tumsyn.errors import ConfigError
from tumsyn.infer.loading import bundled_checkpoint_path, ignored_prompt_fields
from tumsyn.models import load_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "package_release.py"
spec = importlib.util.spec_from_file_location("package_release", SCRIPT)
package_release = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package_release  # its dataclass looks its module up
spec.loader.exec_module(package_release)


def _parameters_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = dict(first.named_parameters()), dict(second.named_parameters())
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_routed_release_is_extended_by_a_network_tuned_from_it(
    synth_config, text_encoder: Path, tmp_path
) -> None:
    assert main(["train", str(synth_config(tmp_path, "t1")), "--quiet"]) == 0
    run = str(tmp_path / "t1" / "model.safetensors")
    base = tmp_path / "base.safetensors"
    package_release.main(["base", str(text_encoder), str(base), f"T1w={run}", f"T2w={run}"])
    # A specialist fine-tuned from the base's T2w network, on the base's own text tower.
    tuned = synth_config(tmp_path, "t2-t1", text_encoder=str(base), init=str(base),
                         init_network="T2w")  # fmt: skip
    assert main(["train", str(tuned), "--quiet"]) == 0
    specialist = str(tmp_path / "t2-t1" / "model.safetensors")
    out = tmp_path / "extended.safetensors"
    package_release.main(["extended", str(base), str(out), f"T2w:T1w={specialist}"])
    before, after = load_checkpoint(base), load_checkpoint(out)
    assert list(after.synth.networks) == ["T1w", "T2w", "T2w:T1w"]
    assert after.synth.fallback == "T1w"
    assert all(_parameters_equal(before.synth.networks[k], after.synth.networks[k])
               for k in ("T1w", "T2w"))  # fmt: skip
    assert _parameters_equal(before.text, after.text)
    facts = [read_checkpoint_metadata(path)["extra"] for path in (base, out)]
    assert facts[1]["coverage"] == facts[0]["coverage"]
    assert facts[1]["stage1"] == facts[0]["stage1"]
    assert facts[1]["stage2"]["networks"]["T2w"] == facts[0]["stage2"]["networks"]["T2w"]
    assert facts[1]["stage2"]["networks"]["T2w:T1w"]["steps"] > 0
    # The specialist answers T1w targets of T2w inputs; other targets keep the T2w network.
    assert after.synth.route("T2w", "T1w") == "T2w:T1w"
    assert after.synth.route("T2w", "FLAIR") == "T2w"


def _repackaged(tmp_path: Path, name: str, *options: str) -> Path:
    """The bundled tumsyn-v2 packaged again (no network added), with ``options``."""
    out = tmp_path / f"{name}.safetensors"
    package_release.main([name, str(bundled_checkpoint_path()), str(out), *options])
    return out


def test_a_model_packaged_to_ignore_age_and_sex_answers_every_age_alike(tmp_path) -> None:
    kept = Synthesizer.from_checkpoint(_repackaged(tmp_path, "kept", "--ignore-prompt-fields="))
    ignoring = Synthesizer.from_checkpoint(
        _repackaged(tmp_path, "ignoring", "--ignore-prompt-fields", "age, sex")
    )
    assert kept.ignored_fields == () and ignoring.ignored_fields == ("age", "sex")
    data = np.zeros((20, 20, 20), np.float32)
    data[4:16, 4:16, 4:16] = np.linspace(50, 150, 12)[:, None, None]
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

    def output(synth: Synthesizer, **fields):
        image = synth(data, "T1w", affine=affine, input_modality="T2w", **fields)
        return np.asarray(image.dataobj), image

    no_subject, _ = output(kept)
    assert not np.array_equal(output(kept, age=70, sex="F")[0], no_subject)  # the field matters
    told, image = output(ignoring, age=70, sex="F")
    assert np.array_equal(told, no_subject)
    assert image.prompt.startswith("Age: None; Gender: None;")
    assert (image.metadata.age, image.metadata.sex) == (70, "F")  # the subject, as asked for
    assert ignoring.left_out(image.metadata) == ("age", "sex")
    assert ignoring.left_out(ignoring.target("T1w", voxel_size=(1, 1, 1))) == ()


def test_a_field_that_synthesis_needs_cannot_be_ignored(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _repackaged(tmp_path, "bad", "--ignore-prompt-fields", "age,modality")
    assert exit_info.value.code == 2
    assert "modality: not a prompt field a model may leave out" in capsys.readouterr().err
    meta = {"extra": {"ignored_prompt_fields": ["voxel_size"]}, "path": "model.safetensors"}
    with pytest.raises(ConfigError, match="model.safetensors: records ignored prompt fields"):
        ignored_prompt_fields(meta)
