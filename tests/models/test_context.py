"""The input context: a thumbnail of the whole input modulating stage 2's features (FiLM)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import TINY_SYNTH_SPEC
from tumsyn.data.volumes import input_thumbnail
from tumsyn.models.liif import cell_centres
from tumsyn.models.registry import build

CONTEXT_SPEC = {
    **TINY_SYNTH_SPEC,
    "args": {**TINY_SYNTH_SPEC["args"], "context": {"size": 8, "widths": [4, 4]}},
}


def _inputs(batch: int = 2):
    torch.manual_seed(0)
    coord = cell_centres((6, 6, 6))[None].expand(batch, -1, -1)
    return {
        "image": torch.rand(batch, 1, 6, 6, 6),
        "coord": coord,
        "cell": torch.full_like(coord, 2 / 6),
        "text": torch.randn(batch, 3, 16),
    }


def _predict(model, inputs, thumbnail=None) -> torch.Tensor:
    with torch.no_grad():
        return model(inputs["image"], inputs["coord"], inputs["text"], cell=inputs["cell"],
                     thumbnail=thumbnail)  # fmt: skip


def test_a_new_context_starts_as_the_network_without_it() -> None:
    """Zero-initialised FiLM: a context model holding a plain model's weights predicts the same,
    whatever the thumbnail; once the FiLM has weights, the thumbnail changes the output."""
    torch.manual_seed(1)
    plain, with_context = build(TINY_SYNTH_SPEC).eval(), build(CONTEXT_SPEC).eval()
    missing = with_context.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("context.") for key in missing)
    inputs = _inputs()
    thumbnails = [torch.rand(2, 1, 8, 8, 8), torch.zeros(2, 1, 8, 8, 8)]
    expected = _predict(plain, inputs)
    for thumbnail in thumbnails:
        torch.testing.assert_close(_predict(with_context, inputs, thumbnail), expected)
    torch.nn.init.normal_(with_context.context.film.weight, std=0.5)
    first, second = (_predict(with_context, inputs, t) for t in thumbnails)
    assert (first - second).abs().max() > 1e-3


def test_the_context_is_required_exactly_when_the_network_has_one() -> None:
    inputs = _inputs()
    with pytest.raises(ValueError, match="reads an input thumbnail, got none"):
        _predict(build(CONTEXT_SPEC), inputs)
    with pytest.raises(ValueError, match="reads no input thumbnail, got one"):
        _predict(build(TINY_SYNTH_SPEC), inputs, torch.zeros(2, 1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(B, 1, 8, 8, 8\), got \(2, 1, 6, 6, 6\)"):
        _predict(build(CONTEXT_SPEC), inputs, torch.zeros(2, 1, 6, 6, 6))


def test_the_thumbnail_is_the_foreground_averaged_down() -> None:
    volume = np.zeros((40, 50, 12), dtype=np.float32)
    volume[5:37, 10:42, 2:10] = 0.5  # a box; its upper half brighter along the first axis
    volume[21:37, 10:42, 2:10] = 1.0
    thumbnail = input_thumbnail(volume, 4)
    assert thumbnail.shape == (4, 4, 4) and thumbnail.dtype == np.float32
    np.testing.assert_allclose(thumbnail[:2], 0.5)  # the box fills the thumbnail: cropped
    np.testing.assert_allclose(thumbnail[2:], 1.0)
    # The same object sampled at half the voxel size gives (nearly) the same thumbnail.
    finer = np.kron(volume, np.ones((2, 2, 2), dtype=np.float32))
    np.testing.assert_allclose(input_thumbnail(finer, 4), thumbnail, atol=1e-6)
    assert not input_thumbnail(np.zeros((5, 5, 5), dtype=np.float32), 4).any()
