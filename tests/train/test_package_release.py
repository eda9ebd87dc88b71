"""scripts/package_release.py: stage-2 runs bundled into a routed model, and a routed model
extended by a network fine-tuned from it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

from tumsyn.cli import main
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
