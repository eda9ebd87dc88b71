"""``official-synth`` computes what the official TUMSyn code computes, given the same weights.

Fixture ``data/official_synth_reference.npz``, produced once by running the official code
(github.com/Wangyulin-user/TUMSyn, commit 26043b549d2b8512a5f4e2b99cb916f83a69851c, files
``models/{lccd,cross_att,linear,resencoder,models}.py`` and ``utils.make_coord``) with torch
2.13.0 on CPU, float32:

1. ``models.make({"name": "lccd", "args": {"encoder_spec": {"name": "resencoder-256", "args":
   {"no_upsampling": True}}, "no_imnet": False}})`` (the model of ``configs/train_lccd_sr.yaml``),
   weights from :func:`helpers.deterministic_weights` (imported from this repository), ``eval()``;
2. ``g = torch.Generator().manual_seed(0)``; ``image = torch.rand(1, 1, 16, 16, 16, generator=g)``;
   ``text = torch.randn(1, 768, generator=g)`` (the shape ``CLIP.encode_text`` gives ``demo.py``);
3. under ``torch.no_grad()``, ``model.single_forward(image, make_coord([n] * 3)[None], text)`` for
   ``n = 16`` (``out_16``: the voxel centres) and ``n = 20`` (``out_20``: upsampling), flattened in
   ``make_coord`` order.

The file stores ``image``, ``text``, ``out_16``, ``out_20``, ``official_commit`` and
``torch_version``. Outputs have std about 0.1 (not a constant). The measured agreement of tumsyn
with it is below 2e-6 on both grids (below 1e-6 with direct convolutions; under ``no_grad`` the
encoder's 256-channel convolutions use Winograd, ``models/winograd.py``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import DATA, deterministic_weights, fill_deterministic_
from tumsyn.models import build
from tumsyn.models.liif import cell_centres

REFERENCE = DATA / "official_synth_reference.npz"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as content:
        return {key: content[key] for key in content.files}


def test_fixture_is_what_its_docstring_says(reference) -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 1, 16, 16, 16, generator=generator)
    text = torch.randn(1, 768, generator=generator)
    assert np.array_equal(reference["image"], image.numpy())
    assert np.array_equal(reference["text"], text.numpy())
    assert str(reference["official_commit"]).startswith("26043b5")
    for n in (16, 20):
        out = reference[f"out_{n}"]
        assert out.shape == (n**3,) and out.dtype == np.float32
        assert out.std() > 0.05  # not trivially constant: a real test of the arithmetic


def test_weight_filler_depends_only_on_key_and_shape() -> None:
    state = {
        "b.weight": torch.zeros(4, 3, 3),
        "a.bias": torch.zeros(4),
        "n": torch.zeros((), dtype=torch.long),
    }
    first = deterministic_weights(state)
    again = deterministic_weights(dict(reversed(state.items())))
    assert all(torch.equal(first[key], again[key]) for key in state)
    assert first["b.weight"].std() < 0.5 and torch.equal(first["n"], state["n"])


def test_official_synth_matches_the_official_code(reference) -> None:
    with torch.device("meta"):  # the filler only reads shapes: skip the default initialisation
        model = build("official-synth")
    fill_deterministic_(model)
    model.eval()
    image = torch.from_numpy(reference["image"])
    text = torch.from_numpy(reference["text"])
    # Both grids in one forward call (the decoder is point-wise), so the 113M-parameter encoder
    # runs once. make_coord and cell_centres agree to 6e-8 (same (z, y, x) order, 'ij' meshgrid).
    grids = [cell_centres((n, n, n)) for n in (16, 20)]
    cells = [torch.full_like(g, 2 / n) for g, n in zip(grids, (16, 20), strict=True)]
    coord, cell = torch.cat(grids)[None], torch.cat(cells)[None]
    with torch.no_grad():
        out = model(image, coord, text, cell=cell)[0, :, 0].numpy()
    ours = {16: out[: 16**3], 20: out[16**3 :]}
    for n in (16, 20):
        expected = reference[f"out_{n}"]
        difference = np.abs(ours[n] - expected).max()
        assert difference <= TOLERANCE, f"{n}^3 grid: max |tumsyn - official| = {difference:.3g}"
