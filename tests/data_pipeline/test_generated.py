"""Samples generated on the fly from a virtual subject: seeded, in the right frame, and (in the
identity case of an ideal input) the target seen through the input patch."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from tumsyn.data.generated import GeneratedPairs
from tumsyn.errors import ConfigError
from tumsyn.metadata import default_protocol, load_protocols, parse_prompt
from tumsyn.models.liif import sample_grid
from tumsyn.simulate import make_subject
from tumsyn.simulate.randomize import InputDraw, InputRandomizer
from tumsyn.simulate.render import ScanSettings


@pytest.fixture(scope="module")
def pairs() -> GeneratedPairs:
    targets = [p.metadata for p in load_protocols("library")]
    return GeneratedPairs([make_subject(1)], targets, InputRandomizer(), patch_size=16,
                          queries=500, length=8, seed=3)  # fmt: skip


def test_a_sample_depends_on_seed_epoch_and_index_alone(pairs: GeneratedPairs) -> None:
    first, again = pairs[2], pairs[2]
    assert all(torch.equal(first[k], again[k]) for k in ("source", "coord", "target"))
    assert first["prompt"] == again["prompt"]
    pairs.set_epoch(1)
    try:
        assert not torch.equal(pairs[2]["source"], first["source"])
    finally:
        pairs.set_epoch(0)


def test_samples_are_in_the_patch_frame_with_the_prompts_voxel_size(pairs: GeneratedPairs) -> None:
    for index in range(4):
        parameters, sample = pairs.parameters(index), pairs[index]
        assert sample["source"].shape == (1, 16, 16, 16) and sample["target"].shape == (500, 1)
        assert sample["coord"].abs().max() <= 1.0
        assert sample["target"].min() >= 0.0 and sample["target"].max() <= 1.0
        prompted = parse_prompt(sample["prompt"])
        assert prompted.voxel_size == parameters.target.voxel_size
        assert all(0.7 <= v <= 3.0 for v in prompted.voxel_size)
        ratio = np.asarray(parameters.target.voxel_size) / np.asarray(parameters.draw.voxel_size)
        np.testing.assert_allclose(sample["cell"][0].numpy(), 2 * ratio / 16, rtol=1e-5)


def test_an_ideal_input_of_the_targets_protocol_shows_the_target(pairs: GeneratedPairs) -> None:
    """Input = the target's own protocol and voxel size, no noise, bias, gamma or shift: the
    patch sampled at the query coordinates must be the target (up to normalisation)."""
    flair = default_protocol("FLAIR").metadata.replace(voxel_size=(2.0, 2.0, 2.0))
    ideal = InputDraw(protocol=flair, signals=None, voxel_size=(2.0, 2.0, 2.0),
                      scan=ScanSettings(snr=1e9, bias=(0.0,) * 9), shift_mm=(0.0, 0.0, 0.0),
                      gamma=1.0, mask_margin_mm=0.0)  # fmt: skip
    parameters = replace(pairs.parameters(0), draw=ideal, target=flair)
    sample = pairs.render(parameters)
    seen = sample_grid(sample["source"][None], sample["coord"][None], mode="nearest")[0, :, 0]
    inside = (sample["target"][:, 0] > 0.05) & (seen > 0.05)
    correlation = np.corrcoef(seen[inside].numpy(), sample["target"][inside, 0].numpy())[0, 1]
    assert inside.sum() > 100 and correlation > 0.98


def test_inputs_are_scaled_as_the_normalisation_named() -> None:
    """An ideal T2w input: white matter sits at 0 under the percentile scaling (model v1's) and
    at its ratio to CSF under "scale"; an unknown name is refused."""
    targets = [p.metadata for p in load_protocols("library")]
    t2w = default_protocol("T2w").metadata.replace(voxel_size=(2.0, 2.0, 2.0))
    ideal = InputDraw(protocol=t2w, signals=None, voxel_size=(2.0, 2.0, 2.0),
                      scan=ScanSettings(snr=1e9, bias=(0.0,) * 9), shift_mm=(0.0, 0.0, 0.0),
                      gamma=1.0, mask_margin_mm=0.0)  # fmt: skip
    darkest = {}
    for name in ("tumsyn", "scale"):
        pairs = GeneratedPairs([make_subject(1)], targets, InputRandomizer(), patch_size=24,
                               normalisation=name, length=1, seed=3)  # fmt: skip
        source = pairs.render(replace(pairs.parameters(0), draw=ideal))["source"]
        darkest[name] = float(np.percentile(source[source > 0].numpy(), 5))
    assert darkest["tumsyn"] < 0.02 and darkest["scale"] > 0.15
    with pytest.raises(ConfigError, match="normalisation 'minmax' is not one of"):
        GeneratedPairs([make_subject(1)], targets, InputRandomizer(), normalisation="minmax")


def test_input_modalities_keep_only_inputs_of_those_modalities() -> None:
    targets = [p.metadata for p in load_protocols("library")]
    only_t1 = GeneratedPairs([make_subject(1)], targets, InputRandomizer(),
                             input_modalities=["t1"], length=20, seed=3)  # fmt: skip
    draws = [only_t1.parameters(i).draw for i in range(20)]
    assert all(d.protocol is not None and d.protocol.modality == "T1w" for d in draws)  # alias
    assert len({d.protocol.tr for d in draws}) == 20  # still random protocols
    with pytest.raises(ConfigError, match=r"input_modalities \['T1CE'\]: the randomizer draws"):
        GeneratedPairs([make_subject(1)], targets, InputRandomizer(), input_modalities=["T1CE"])
    never = GeneratedPairs([make_subject(1)], targets, InputRandomizer(physics_probability=0.0),
                           input_modalities=["T1w"], length=1)  # fmt: skip
    with pytest.raises(ConfigError, match="physics_probability must be above 0"):
        never.parameters(0)


def test_a_normal_tissue_target_scale_does_not_move_with_lesions_elsewhere() -> None:
    """The same subject with and without white-matter lesions in its left hemisphere, a FLAIR
    target in the right: "image" scaling changes with the lesions (they set its 99.5th
    percentile), "normal_tissue" scaling barely (lesions this large leave less normal white
    matter to take percentiles over); an unknown name is refused."""
    from tumsyn.simulate.tissues import TISSUES

    plain = make_subject(1)
    fractions = plain.fractions.copy()
    left = np.zeros(plain.grid.shape, dtype=bool)
    left[: plain.grid.shape[0] // 2 - 10] = True  # array axis 0 runs right to left in MNI space
    wm, wmh = TISSUES.index("WM"), TISSUES.index("WMH")
    moved = np.where(left, fractions[wm] * 0.8, 0.0)
    fractions[wm] -= moved
    fractions[wmh] += moved
    lesioned = replace(plain, fractions=fractions)
    flair = default_protocol("FLAIR").metadata.replace(voxel_size=(2.0, 2.0, 2.0))
    ideal = InputDraw(protocol=flair, signals=None, voxel_size=(1.0, 1.0, 1.0),
                      scan=ScanSettings(snr=1e9, bias=(0.0,) * 9), shift_mm=(0.0, 0.0, 0.0),
                      gamma=1.0, mask_margin_mm=0.0)  # fmt: skip
    right = plain.grid.affine[:3, :3] @ (0.75 * np.asarray(plain.grid.shape) * [1, 0.66, 0.8])
    centre = tuple(float(c) for c in right + plain.grid.affine[:3, 3])
    targets = {}
    for scale in ("image", "normal_tissue"):
        pairs = GeneratedPairs([plain, lesioned], [flair], InputRandomizer(), patch_size=16,
                               queries=300, target_scale=scale, length=1, seed=3)  # fmt: skip
        base = replace(pairs.parameters(0), draw=ideal, target=flair, centre_mm=centre)
        targets[scale] = [pairs.render(replace(base, anatomy=i))["target"] for i in (0, 1)]
    assert float(targets["image"][0].mean()) > 1.1 * float(targets["image"][1].mean())
    torch.testing.assert_close(*targets["normal_tissue"], rtol=0.03, atol=0.01)
    with pytest.raises(ConfigError, match="target_scale 'max' is not one of"):
        GeneratedPairs([plain], [flair], InputRandomizer(), target_scale="max")
