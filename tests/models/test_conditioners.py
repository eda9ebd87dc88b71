"""The baseline conditioners' features, computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from helpers import TINY_SYNTH_SPEC
from tumsyn.metadata import ImagingMetadata, format_prompt
from tumsyn.models import build, make_pipeline
from tumsyn.models.conditioners import site_label

PROMPT = format_prompt(
    ImagingMetadata(
        age=50,
        sex="F",
        field_strength=3,
        manufacturer="Siemens",
        modality="T2w",
        voxel_size=(1, 1, 2),
        tr=1000,
        te=100,
        flip_angle=90,
    )
)


def test_onehot_marks_the_modality_and_the_site_only() -> None:
    onehot = build({"name": "onehot", "args": {"sites": ["GE 1.5T", "Siemens 3T"]}})
    vector, mask = onehot.features([PROMPT], pooled=False)
    assert vector.shape == (1, 1, 9) and mask.all()
    modality, site = [0, 1, 0, 0, 0, 0, 0], [0, 1]  # T2w among MODALITIES; "Siemens 3T"
    assert vector[0, 0].tolist() == [*modality, *site]
    unseen = PROMPT.replace("Siemens", "Philips")
    assert onehot.features([unseen], pooled=True)[0][0, 7:].tolist() == [0, 0]


def test_metadata_vector_holds_the_numbers_normalised() -> None:
    metadata = build({"name": "metadata"})
    vector = metadata.features([PROMPT], pooled=True)[0][0].tolist()
    assert len(vector) == metadata.embed_dim == 28
    numbers = vector[7 + 3 :]
    assert numbers[:2] == [1.0, 1.0]  # 3 T / 3, known
    assert numbers[2:4] == [pytest.approx(math.log10(1000) / 4), 1.0]  # TR
    assert numbers[4:6] == [pytest.approx(math.log10(100) / 4), 1.0]  # TE
    assert numbers[6:8] == [0.0, 0.0]  # no TI
    assert numbers[8:11] == [1.0, 1.0, 0.0]  # flip angle 90 / 90, known, not variable
    assert numbers[11:14] == [0.5, 0.5, 1.0]  # voxel size / 2 mm
    assert numbers[14:16] == [0.5, 1.0] and numbers[16:] == [1.0, 0.0]  # age 50, female
    assert vector[7:10] == [1.0, 0.0, 0.0]  # Siemens


def test_site_needs_vendor_and_field() -> None:
    assert site_label(ImagingMetadata(manufacturer="GE", field_strength=1.5)) == "GE 1.5T"
    assert site_label(ImagingMetadata(manufacturer="GE")) is None


def test_a_pipeline_refuses_a_conditioner_of_another_size() -> None:
    from tumsyn.errors import ConfigError

    with pytest.raises(ConfigError, match="28-d features"):
        make_pipeline(build({"name": "metadata"}), build(TINY_SYNTH_SPEC))


def test_a_pipeline_runs_with_a_structured_conditioner() -> None:
    spec = {**TINY_SYNTH_SPEC, "args": {**TINY_SYNTH_SPEC["args"], "text_dim": 28}}
    pipeline = make_pipeline(build({"name": "metadata"}), build(spec))
    predict = pipeline.predictor(PROMPT)
    out = predict(
        torch.rand(1, 1, 8, 8, 8), torch.rand(1, 5, 3) * 2 - 1, torch.full((1, 5, 3), 0.25)
    )
    assert out.shape == (1, 5, 1)
