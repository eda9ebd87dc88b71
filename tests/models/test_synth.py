"""The stage-2 network: official parameter layout, our architecture, chunked decoding."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

import tumsyn.models.synth  # noqa: F401  (registers the "synth" family)
from helpers import DATA, TINY_SYNTH_SPEC
from tumsyn.errors import ConfigError
from tumsyn.models.fusion import (
    GatedFeedForward,
    GlobalTextFusion,
    ModulatedVoxelFusion,
    VoxelCrossAttentionFusion,
    summary_token,
)
from tumsyn.models.liif import LocalImplicitDecoder, OfficialDecoder, cell_centres, sample_grid
from tumsyn.models.registry import build, load_config
from tumsyn.models.residual_encoder import ResidualEncoder3D
from tumsyn.models.synth import extends_spec

OFFICIAL_PARAMETERS = 113_595_137


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_official_synth_has_every_official_key_and_shape() -> None:
    # Facts measured by running the official model definition (shared/reference, commit 26043b5).
    reference = json.loads((DATA / "official_synth_keys.json").read_text())
    with torch.device("meta"):
        model = build("official-synth")
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert shapes == reference
    assert _count(model) == OFFICIAL_PARAMETERS


def test_paper_size_configs_are_about_114m_parameters() -> None:
    with torch.device("meta"):
        base = build("tumsyn-base")
    assert 105e6 < _count(base) < 120e6


@pytest.mark.parametrize(
    "name", ["official-synth", "tumsyn-base", "tumsyn-tiny", "tumsyn-tiny-ctx"]
)
def test_every_config_runs_forward_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = build(name).eval()
    text_dim = model.spec["args"]["text_dim"]
    image = torch.randn(1, 1, 4, 5, 6)
    coord = cell_centres((8, 10, 12))[None]
    cell = torch.full_like(coord, 2 / 8)
    text = torch.randn(1, text_dim) if "official" in name else torch.randn(1, 7, text_dim)
    with torch.no_grad():
        out = model(image, coord, text, cell=cell)
    assert out.shape == (1, 8 * 10 * 12, 1)
    assert torch.isfinite(out).all()


def _tiny_feat() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 6, 4, 5, 3)


@pytest.mark.parametrize(
    "decoder",
    [
        OfficialDecoder(in_channels=6, hidden=[32, 16]),
        LocalImplicitDecoder(in_channels=6, hidden=[32, 16]),
    ],
    ids=["official", "liif"],
)
def test_chunked_decoding_equals_unchunked(decoder) -> None:
    feat = _tiny_feat()
    coord = torch.rand(2, 1000, 3) * 2 - 1
    cell = torch.full_like(coord, 0.1)
    with torch.no_grad():
        whole = decoder(feat, coord, cell)
        chunked = decoder(feat, coord, cell, chunk_size=97)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-6)


def _liif_reference(decoder: LocalImplicitDecoder, feat, coord, cell) -> torch.Tensor:
    """LIIF's local ensemble written plainly (Chen et al. 2021, in 3D): for each of the 8
    neighbours, the nearest feature vector (unfolded if asked), the relative coordinate and the
    cell through the whole MLP, weighted by the volume of the opposite sub-cell."""
    if decoder.unfold:
        b, c, *spatial = feat.shape
        windows = F.pad(feat, (1,) * 6).unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)
        feat = windows.permute(0, 1, 5, 6, 7, 2, 3, 4).reshape(b, c * 27, *spatial)
    size = torch.tensor(feat.shape[2:], dtype=torch.float32)
    centres = cell_centres(feat.shape[2:], flatten=False).permute(3, 0, 1, 2)[None]
    centres = centres.expand(feat.shape[0], -1, -1, -1, -1)
    predictions, volumes = [], []
    for corner in itertools.product((-1.0, 1.0), repeat=3):
        shifted = (coord + torch.tensor(corner) / size + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
        vector = sample_grid(feat, shifted, "nearest", "border")
        relative = (coord - sample_grid(centres, shifted, "nearest", "border")) * size
        predictions.append(decoder.layers(torch.cat([vector, relative, cell * size], dim=-1)))
        volumes.append(relative.abs().prod(dim=-1, keepdim=True) + 1e-9)
    weighted = sum(p * v for p, v in zip(predictions, reversed(volumes), strict=True))
    return weighted / torch.stack(volumes).sum(dim=0)


@pytest.mark.parametrize(("unfold", "budget"), [(False, 2**30), (True, 2**30), (False, 0)])
def test_liif_decoder_computes_the_local_ensemble(unfold: bool, budget: int) -> None:
    # The decoder projects the grid through the first layer once (unless the projection would
    # exceed its memory budget) and skips neighbours without weight; the function must stay
    # LIIF's, off the voxel centres and on them.
    torch.manual_seed(0)
    decoder = LocalImplicitDecoder(in_channels=6, hidden=[32, 16], unfold=unfold)
    decoder.projection_budget = budget
    feat = torch.randn(2, 6, 4, 5, 6)
    random = torch.rand(2, 500, 3) * 2.2 - 1.1  # some points beyond the grid's edge
    centres = cell_centres((4, 5, 6))[None].expand(2, -1, -1)
    for coord in (random, centres):
        cell = torch.full_like(coord, 0.15)
        with torch.no_grad():
            expected = _liif_reference(decoder, feat, coord, cell)
            torch.testing.assert_close(decoder(feat, coord, cell), expected, rtol=0, atol=2e-5)


def test_feed_forward_in_depth_slabs_equals_the_whole() -> None:
    # Big inputs go through the gated feed-forward in slabs (bounded memory); same result.
    torch.manual_seed(0)
    block = GatedFeedForward(8, 16)
    x = torch.randn(2, 8, 11, 6, 7)
    with torch.no_grad():
        whole = block(x)
        for slab_bytes in (1, 3 * 2 * 16 * 6 * 7 * 4):  # one plane, three planes at a time
            block.slab_bytes = slab_bytes
            torch.testing.assert_close(block(x), whole, rtol=0, atol=1e-6)


def test_liif_ensemble_is_continuous_across_voxel_borders() -> None:
    decoder = LocalImplicitDecoder(in_channels=6, hidden=[32, 16])
    feat = _tiny_feat()
    border = -1 + 2 * 2 / 4  # between voxels 1 and 2 along z (4 voxels)
    coord = torch.tensor([[[border - 1e-4, 0.1, 0.2], [border + 1e-4, 0.1, 0.2]]]).expand(2, -1, -1)
    cell = torch.full_like(coord, 0.05)
    with torch.no_grad():
        below, above = decoder(feat, coord, cell).unbind(1)
    torch.testing.assert_close(below, above, rtol=0, atol=1e-2)


def test_cell_centres() -> None:
    centres = cell_centres((2, 4, 1))
    assert centres.shape == (8, 3)
    assert torch.allclose(centres[:, 0].unique(), torch.tensor([-0.5, 0.5]))
    assert torch.allclose(centres[:, 1].unique(), torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    assert torch.all(centres[:, 2] == 0)


def test_official_quirks_change_the_attention() -> None:
    torch.manual_seed(2)
    quirky = GlobalTextFusion(dim=16, heads=4, mlp_ratio=2, official_quirks=True).eval()
    proper = GlobalTextFusion(dim=16, heads=4, mlp_ratio=2, official_quirks=False).eval()
    proper.load_state_dict(quirky.state_dict())  # same weights, different arithmetic
    x, text = torch.randn(2, 16, 3, 3, 3), torch.randn(2, 16)
    with torch.no_grad():
        assert not torch.allclose(quirky(x, text), proper(x, text))
        # The official block takes the prompt as (B, 1, C) too.
        torch.testing.assert_close(quirky(x, text[:, None]), quirky(x, text))


def test_voxel_fusion_ignores_masked_tokens_and_uses_real_ones() -> None:
    torch.manual_seed(3)
    fusion = VoxelCrossAttentionFusion(dim=16, text_dim=8, heads=2).eval()
    x, tokens = torch.randn(1, 16, 3, 3, 3), torch.randn(1, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]])
    changed_padding, changed_real = tokens.clone(), tokens.clone()
    changed_padding[:, 3:] = 100.0
    changed_real[:, 1] = 100.0
    with torch.no_grad():
        reference = fusion(x, tokens, mask)
        torch.testing.assert_close(fusion(x, changed_padding, mask), reference)
        assert not torch.allclose(fusion(x, changed_real, mask), reference)


def test_voxel_fusion_of_a_batch_equals_each_prompt_alone() -> None:
    """Prompts of different lengths in one batch (the padding no prompt uses is dropped) give
    each image what it gets on its own, with its own padding."""
    torch.manual_seed(4)
    fusion = ModulatedVoxelFusion(dim=16, text_dim=8, heads=2).eval()
    torch.nn.init.normal_(fusion.to_scale_shift.weight, std=0.2)
    x, tokens = torch.randn(2, 16, 3, 4, 5), torch.randn(2, 6, 8)
    mask = torch.tensor([[True, True, False, False, False, False], [True] * 4 + [False] * 2])
    with torch.no_grad():
        batch = fusion(x, tokens, mask)
        for n in range(2):
            alone = fusion(x[n : n + 1], tokens[n : n + 1], mask[n : n + 1])
            torch.testing.assert_close(batch[n : n + 1], alone)
        assert batch.shape == x.shape and torch.isfinite(batch).all()


def test_summary_token_is_each_prompts_last_real_token() -> None:
    tokens = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert summary_token(tokens, mask)[:, 0].tolist() == [2.0, 7.0]
    assert summary_token(tokens, None)[:, 0].tolist() == [3.0, 7.0]


def test_modulated_fusion_starts_as_the_plain_one_and_reads_the_summary_token() -> None:
    torch.manual_seed(4)
    plain = VoxelCrossAttentionFusion(dim=16, text_dim=8, heads=2).eval()
    modulated = ModulatedVoxelFusion(dim=16, text_dim=8, heads=2).eval()
    missing = modulated.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing == ["to_scale_shift.weight", "to_scale_shift.bias"]
    x, tokens = torch.randn(2, 16, 3, 3, 3), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False]] * 2)
    with torch.no_grad():
        torch.testing.assert_close(modulated(x, tokens, mask), plain(x, tokens, mask))
        torch.nn.init.normal_(modulated.to_scale_shift.weight)
        reference = modulated(x, tokens, mask)
        changed_summary, changed_padding = tokens.clone(), tokens.clone()
        changed_summary[:, 2] += torch.randn(8)  # the end token: plain fusion barely notices
        changed_padding[:, 3:] = 100.0
        torch.testing.assert_close(modulated(x, changed_padding, mask), reference)
        moved = (modulated(x, changed_summary, mask) - reference).abs().mean()
        moved_plain = (plain(x, changed_summary, mask) - plain(x, tokens, mask)).abs().mean()
        assert moved > 3 * moved_plain


def _with(spec: dict, **args) -> dict:
    """``spec`` with some of its args' sub-dicts updated, normalised as a checkpoint stores it."""
    merged = {key: {**spec["args"][key], **value} for key, value in args.items()}
    return load_config({**spec, "args": {**spec["args"], **merged}})


def test_context_branch_starts_as_the_identity_and_sees_beyond_the_full_resolution_blocks() -> None:
    torch.manual_seed(5)
    plain_spec = load_config(TINY_SYNTH_SPEC)
    context_spec = _with(plain_spec, encoder={"context": {"factor": 4, "blocks": 1}})
    plain, with_context = build(plain_spec).eval(), build(context_spec).eval()
    missing = with_context.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(key.startswith("encoder.context.") for key in missing)
    image = torch.randn(1, 1, 24, 23, 21)  # sides that the pooling does not divide
    with torch.no_grad():
        torch.testing.assert_close(with_context.gen_feat(image), plain.gen_feat(image))
        torch.nn.init.normal_(with_context.encoder.context.out.weight)
        # Reach: a voxel 10 away changes the centre's features only through the context branch
        # (five 3^3 convolutions at full resolution see 5 voxels to either side).
        moved = image.clone()
        moved[0, 0, 12, 11, 0] += 10.0
        centre = (..., 12, 11, 10)
        assert torch.equal(plain.gen_feat(moved)[centre], plain.gen_feat(image)[centre])
        changed = with_context.gen_feat(moved)[centre] - with_context.gen_feat(image)[centre]
        assert changed.abs().max() > 1e-4


def test_extensions_fine_tune_from_the_specs_they_extend() -> None:
    plain = load_config(TINY_SYNTH_SPEC)
    film = _with(plain, fusion={"kind": "voxel_film"})
    context = _with(plain, encoder={"context": {"factor": 2, "blocks": 1}})
    both = _with(film, encoder={"context": {"factor": 2, "blocks": 1}})
    other_context = _with(film, encoder={"context": {"factor": 4, "blocks": 1}})
    grows = {(a, b) for (a, spec), (b, base) in itertools.permutations(
        {"plain": plain, "film": film, "context": context, "both": both,
         "other": other_context}.items(), 2) if extends_spec(spec, base)}  # fmt: skip
    assert grows == {("film", "plain"), ("context", "plain"), ("both", "plain"),
                     ("both", "film"), ("both", "context"), ("other", "plain"),
                     ("other", "film")}  # fmt: skip


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="features"):
        ResidualEncoder3D(features=0)
    with pytest.raises(ValueError, match="factor >= 2"):
        ResidualEncoder3D(features=4, context={"factor": 1, "blocks": 1})
    with pytest.raises(ValueError, match="multiple of heads"):
        VoxelCrossAttentionFusion(dim=10, text_dim=4, heads=3)
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        ResidualEncoder3D(features=4, blocks=1, out_channels=4)(torch.zeros(1, 4, 4, 4))
    with pytest.raises(ValueError, match="cell size"):
        LocalImplicitDecoder(in_channels=6)(_tiny_feat(), torch.zeros(2, 3, 3))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"encoder": {"width": 3}}, "encoder.width: Extra inputs"),
        ({"decoder": {"hidden": "wide"}}, "decoder.hidden"),
        ({"fusion": {"kind": "global"}, "text_dim": 128}, "text_dim == encoder.out_channels"),
        ({"official_quirks": True}, "only applies to the global"),
    ],
)
def test_bad_configs_say_which_setting(args, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"name": "synth", "args": args})


def test_config_errors_for_names_and_families(tmp_path) -> None:
    with pytest.raises(ConfigError, match="packaged"):
        load_config("no-such-model")
    path = tmp_path / "model.yaml"
    path.write_text("name: gan\nargs: {}\n")
    with pytest.raises(ConfigError, match="unknown model 'gan'"):
        load_config(path)
    spec = load_config("tumsyn-tiny")
    assert spec["args"]["decoder"]["kind"] == "liif" and load_config(spec) == spec


def test_models_command_lists_every_config(capsys) -> None:
    from tumsyn.cli import main
    from tumsyn.infer.loading import BUNDLED_CHECKPOINTS
    from tumsyn.models import list_configs

    assert main(["models", "--patch", "16"]) == 0
    configs, bundled = capsys.readouterr().out.split("\n\n")
    rows = {line.split()[0]: line for line in configs.splitlines()[1:]}
    assert set(rows) == set(list_configs())
    assert "113,595,137" in rows["official-synth"]
    assert "997,652,609" in rows["official-bmlip"]
    # The bundled models, with the networks a fine-tuning run's init_network may name.
    models = {line.split()[0]: line for line in bundled.splitlines()[1:]}
    assert set(models) == set(BUNDLED_CHECKPOINTS)
    assert "T1w (fallback), T2w, PD, FLAIR, T1w:FLAIR, T2w:T1w" in models["tumsyn-v2"]
    assert "one network for every input" in models["tumsyn-tiny"]


class _PassThrough(torch.nn.Module):
    def forward(self, feat, text, mask=None):
        return feat


def test_a_new_fusion_kind_is_one_registered_builder() -> None:
    from tumsyn.models import synth as module

    module.register_fusion("pass-through", pooled_text=True)(lambda config: _PassThrough())
    try:
        spec = {
            "name": "synth",
            "args": {**TINY_SYNTH_SPEC["args"], "fusion": {"kind": "pass-through"}},
        }
        network = build(spec)
        assert isinstance(network.fusion, _PassThrough) and network.pooled_text
        assert module.fusion_takes_pooled_text("pass-through")
        assert not module.fusion_takes_pooled_text("voxel")
    finally:
        module._FUSIONS.pop("pass-through")
    with pytest.raises(
        ConfigError, match="unknown fusion kind 'pass-through'; known: global, voxel, voxel_film"
    ):
        build(spec)
