"""A routed model: one synthesis network per input modality, picked by the input's modality in
the pipeline, the Python API and the command line."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import TINY_SYNTH_SPEC
from tumsyn import Synthesizer
from tumsyn.cli import main
from tumsyn.errors import ConfigError
from tumsyn.examples import example_t1w
from tumsyn.infer.preview import PlanePreview
from tumsyn.io import as_volume, load_nifti
from tumsyn.metadata import load_protocols
from tumsyn.models import build, load_checkpoint, make_pipeline, save_checkpoint
from tumsyn.models.routed import make_routed
from tumsyn.simulate import ScanSettings, make_subject, scan

TEXT = {"name": "text", "args": {"width": 16, "layers": 1, "heads": 2, "embed_dim": 16}}


def _networks(count: int = 2) -> list:
    torch.manual_seed(0)
    return [build(TINY_SYNTH_SPEC) for _ in range(count)]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A routed pipeline (T1w and T2w networks, T1w the fallback), a plain pipeline of its T2w
    network, and a 24^3 crop of the bundled T1w saved under a T2w name and a name without one."""
    folder = tmp_path_factory.mktemp("routed")
    torch.manual_seed(0)
    text = build(TEXT)
    t1w, t2w = _networks()
    routed = make_pipeline(text, make_routed({"T1w": t1w, "T2w": t2w}, "T1w"))
    paths = {
        "routed": save_checkpoint(folder / "routed.safetensors", routed),
        "t2w": save_checkpoint(folder / "t2w.safetensors", make_pipeline(text, t2w)),
    }
    image = nib.load(example_t1w())
    start = [(n - 24) // 2 for n in image.shape]
    crop = image.slicer[tuple(slice(s, s + 24) for s in start)]
    data = np.asarray(crop.dataobj, dtype=np.float32)
    for name in ("sub-01_T2w.nii.gz", "IXI002-Guys-0828-T2.nii.gz", "scan.nii.gz"):
        nib.save(nib.Nifti1Image(data, crop.affine), folder / name)
        paths[name] = folder / name
    return paths


def test_the_inputs_modality_picks_the_network() -> None:
    t1w, t2w = _networks()
    routed = make_routed({"t1w": t1w, "T2w": t2w}, "t1")  # aliases are spelled canonically
    assert routed.spec["args"]["fallback"] == "T1w"
    assert routed.for_input("T2w") is t2w and routed.for_input("t2") is t2w
    assert routed.for_input("FLAIR") is t1w and routed.for_input(None) is t1w
    assert t1w.for_input("T2w") is t1w  # a plain network reads every input


def test_a_specialist_answers_only_its_target_from_its_inputs() -> None:
    t1w, t2w, flair = _networks(3)
    routed = make_routed({"T1w": t1w, "T2w": t2w, "t1:flair": flair}, "T1w")
    assert sorted(routed.networks) == ["T1w", "T1w:FLAIR", "T2w"]
    assert routed.for_input("T1w", "FLAIR") is flair and routed.route("t1", "flair") == "T1w:FLAIR"
    assert routed.for_input("T1w", "T2w") is t1w and routed.for_input("T1w") is t1w
    assert routed.for_input(None, "FLAIR") is flair  # the fallback's specialist
    assert routed.for_input("T2w", "FLAIR") is t2w  # T2w inputs have no FLAIR specialist


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"networks": {"T3w": TINY_SYNTH_SPEC}, "fallback": "T3w"}, "unknown modality 'T3w'"),
        ({"networks": {"T1w": TINY_SYNTH_SPEC}, "fallback": "T2w"}, "fallback 'T2w' is not"),
        ({"networks": {}, "fallback": "T1w"}, "at least one network"),
        ({"networks": {"t1w": TINY_SYNTH_SPEC, "T1w": TINY_SYNTH_SPEC}, "fallback": "T1w"},
         "two networks for T1w inputs"),
        ({"networks": {"T1w": TINY_SYNTH_SPEC, "T2w": {**TINY_SYNTH_SPEC, "args": {
            **TINY_SYNTH_SPEC["args"], "text_dim": 32}}}, "fallback": "T1w"}, "one size"),
        ({"networks": {"T1w": {"name": "text"}}, "fallback": "T1w"}, "must be a 'synth' spec"),
        ({"networks": {"T1w": TINY_SYNTH_SPEC, "T2w:FLAIR": TINY_SYNTH_SPEC}, "fallback": "T1w"},
         "the network for T2w inputs to FLAIR needs one for T2w inputs"),
        ({"networks": {"T1w": TINY_SYNTH_SPEC, "T1w:FLAIR": TINY_SYNTH_SPEC},
          "fallback": "T1w:FLAIR"}, "must read inputs of every target"),
        ({"networks": {"T1w": TINY_SYNTH_SPEC, "T1w:FLAIR": TINY_SYNTH_SPEC,
                       "t1:flair": TINY_SYNTH_SPEC}, "fallback": "T1w"},
         "two networks for T1w inputs to FLAIR"),
    ],
)  # fmt: skip
def test_bad_routed_specs_say_what_is_wrong(args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        build({"name": "routed", "args": args})


def test_a_routed_pipeline_round_trips_through_its_checkpoint(files) -> None:
    loaded = load_checkpoint(files["routed"])
    assert sorted(loaded.synth.networks) == ["T1w", "T2w"]
    plain = load_checkpoint(files["t2w"])
    for key, value in plain.synth.state_dict().items():
        assert torch.equal(loaded.synth.networks["T2w"].state_dict()[key], value)


def test_synthesizer_reads_each_input_with_its_modalitys_network(files) -> None:
    routed = Synthesizer.from_checkpoint(files["routed"], device="cpu")
    t2w_only = Synthesizer.from_checkpoint(files["t2w"], device="cpu")
    expected = t2w_only(files["sub-01_T2w.nii.gz"], "FLAIR").get_fdata()
    by_name = routed(files["sub-01_T2w.nii.gz"], "FLAIR")
    by_ixi_name = routed(files["IXI002-Guys-0828-T2.nii.gz"], "FLAIR")
    given = routed(files["scan.nii.gz"], "FLAIR", input_modality="T2w")
    unknown = routed(files["scan.nii.gz"], "FLAIR")
    for image in (by_name, by_ixi_name, given):
        np.testing.assert_array_equal(image.get_fdata(), expected)
        assert not any("modality" in warning for warning in image.warnings)
    assert not np.array_equal(unknown.get_fdata(), expected)  # the T1w network
    assert any("modality was not given" in w and "read as T1w (its background is not zero"
               in w for w in unknown.warnings)  # a crop: no guess, the fallback  # fmt: skip
    other = routed(files["scan.nii.gz"], "FLAIR", input_modality="pd")
    assert any("is PD, which the model has no network for; it was read as T1w, its fallback"
               in w for w in other.warnings)  # a crop: no guess  # fmt: skip
    np.testing.assert_array_equal(other.get_fdata(), unknown.get_fdata())
    plain = t2w_only(files["scan.nii.gz"], "FLAIR")
    assert not any("modality" in warning for warning in plain.warnings)


def test_the_command_line_takes_the_input_modality(files, tmp_path, capsys) -> None:
    out = tmp_path / "flair.nii.gz"
    command = ["synthesize", str(files["scan.nii.gz"]), "-o", str(out), "--modality", "FLAIR",
               "--checkpoint", str(files["routed"]), "--quiet"]  # fmt: skip
    assert main([*command, "--input-modality", "T2w"]) == 0
    assert "read as" not in capsys.readouterr().err
    expected = Synthesizer.from_checkpoint(files["t2w"], device="cpu")(
        files["scan.nii.gz"], "FLAIR"
    )
    np.testing.assert_allclose(nib.load(out).get_fdata(), expected.get_fdata(), rtol=1e-6)
    out.unlink()
    assert main([*command, "--input-modality", "T3w"]) == 2
    assert "unknown modality 'T3w'" in capsys.readouterr().err and not out.exists()
    assert main(command) == 0
    assert "it was read as T1w" in capsys.readouterr().err


def test_an_unnamed_input_is_read_by_the_network_its_intensities_point_to(files) -> None:
    # A simulated T2w array (no file name, no modality given): the guess picks the T2w network,
    # in the whole volume and in the preview, and says so.
    subject = make_subject(7, age=64, sex="F")
    tse = next(
        p for p in load_protocols("library") if p.name == "tse" and p.metadata.modality == "T2w"
    )
    metadata = tse.metadata.replace(voxel_size=(3.0, 3.0, 3.0))
    data, affine = scan(subject, metadata, ScanSettings(snr=20.0))
    routed = Synthesizer.from_checkpoint(files["routed"], device="cpu")
    guessed = routed(data, "FLAIR", affine=affine)
    told = routed(data, "FLAIR", affine=affine, input_modality="T2w")
    np.testing.assert_array_equal(guessed.get_fdata(), told.get_fdata())
    assert any("read as T2w (deep tissue darker" in w for w in guessed.warnings)
    assert not any("modality" in w for w in told.warnings)
    # Named, but of a modality without a network (a T2*w that looks like this): the guess too.
    unnetworked = routed(data, "FLAIR", affine=affine, input_modality="T2starw")
    np.testing.assert_array_equal(unnetworked.get_fdata(), told.get_fdata())
    expected = ("the input is T2star, which the model has no network for; it was read as T2w, "
                "the network its intensities point to")  # fmt: skip
    assert any(expected in warning for warning in unnetworked.warnings)
    volume = as_volume(data, affine)
    target = routed.target("FLAIR", source_voxel_size=volume.voxel_size)
    plane = PlanePreview(routed, volume).plane(target, 2, 20)
    np.testing.assert_allclose(plane, told.get_fdata()[:, :, 20], atol=1e-5)


def test_the_preview_reads_with_the_same_network(files) -> None:
    routed = Synthesizer.from_checkpoint(files["routed"], device="cpu")
    volume = load_nifti(files["scan.nii.gz"])
    metadata = routed.target("FLAIR", source_voxel_size=volume.voxel_size)
    whole = routed.synthesize_volume(volume, metadata, input_modality="T2w").get_fdata()
    for modality in ("T2w", None):
        plane = PlanePreview(routed, volume, input_modality=modality).plane(metadata, 2, 10)
        matches = np.allclose(plane, whole[:, :, 10], atol=1e-5)
        assert matches == (modality == "T2w")


def test_a_specialist_serves_the_api_and_the_preview(tmp_path) -> None:
    torch.manual_seed(0)
    text = build(TEXT)
    t1w, flair = _networks(2)
    routed = make_pipeline(text, make_routed({"T1w": t1w, "T1w:FLAIR": flair}, "T1w"))
    paths = {name: save_checkpoint(tmp_path / f"{name}.safetensors", pipeline)
             for name, pipeline in (("routed", routed), ("flair", make_pipeline(text, flair)),
                                    ("t1w", make_pipeline(text, t1w)))}  # fmt: skip
    image = nib.load(example_t1w())
    start = [(n - 24) // 2 for n in image.shape]
    nib.save(image.slicer[tuple(slice(s, s + 24) for s in start)], tmp_path / "crop.nii.gz")
    volume = load_nifti(tmp_path / "crop.nii.gz")
    synthesizers = {name: Synthesizer.from_checkpoint(path, device="cpu")
                    for name, path in paths.items()}  # fmt: skip
    for modality, network in (("FLAIR", "flair"), ("T2w", "t1w")):
        target = synthesizers["routed"].target(modality, source_voxel_size=volume.voxel_size)
        made = synthesizers["routed"].synthesize_volume(volume, target, input_modality="T1w")
        expected = synthesizers[network].synthesize_volume(volume, target)
        np.testing.assert_array_equal(made.get_fdata(), expected.get_fdata())
        preview = PlanePreview(synthesizers["routed"], volume, input_modality="T1w")
        plane = preview.plane(target, 2, 10)
        np.testing.assert_allclose(plane, made.get_fdata()[:, :, 10], atol=1e-5)
