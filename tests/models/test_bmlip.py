"""Stage 1 (BMLIP): official checkpoint layout, image towers, contrastive loss, configurations.

Fixture ``data/official_bmlip_keys.json``: every state_dict key and shape of the official stage-1
model built from its ``CLIP/model_config.yaml`` (copied from the project's shared reference facts).
The ~1.0B-parameter official model and the paper-size model are built on the meta device, which
checks names, shapes and the forward pass's shapes without allocating memory.
"""

from __future__ import annotations

import json
import math
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
import yaml

from helpers import DATA
from tumsyn.errors import ConfigError
from tumsyn.models.bmlip import (  # importing it registers the family
    BMLIP,
    MAX_LOGIT_SCALE,
    contrastive_logits,
    contrastive_loss,
)
from tumsyn.models.image_encoders import ModifiedResNet3D, ViT3D, resnet_grid
from tumsyn.models.registry import build, list_configs, load_config
from tumsyn.models.text_encoder import TextEncoder
from tumsyn.text import tokenize

OFFICIAL_KEYS = json.loads((DATA / "official_bmlip_keys.json").read_text(encoding="utf-8"))
# Read the family from the YAML itself: other families may not be registered in this process.
BMLIP_CONFIGS = [
    name
    for name in list_configs()
    if yaml.safe_load((resources.files("tumsyn") / "configs" / f"{name}.yaml").read_text())["name"]
    == "bmlip"
]
PROMPTS = [
    "Age: 34; Gender: F; Scanner: 3.0 Siemens; Modality: T1w",
    "Age: 70; Gender: M; Scanner: 1.5 GE; Modality: FLAIR",
    "Age: 16; Gender: F; Scanner: 3.0 Philips; Modality: T2w",
    "Age: 52; Gender: M; Scanner: 3.0 Siemens; Modality: PD",
]


def meta_build(name: str) -> BMLIP:
    with torch.device("meta"):
        return build(name)


def small_resnet_spec(input_size: int = 32) -> dict:
    return {
        "name": "bmlip",
        "args": {
            "embed_dim": 16,
            "text": {"context_length": 90, "width": 32, "layers": 1, "heads": 4},
            "vision": {"kind": "resnet", "input_size": input_size, "layers": [1, 1, 1, 1],
                       "width": 8},
        },
    }  # fmt: skip


# ----- the official layout ----------------------------------------------------------------------


def test_official_state_dict_is_the_released_one() -> None:
    model = meta_build("official-bmlip")
    found = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert list(found) == list(OFFICIAL_KEYS)  # same keys, same order
    assert found == OFFICIAL_KEYS
    total = sum(math.prod(shape) for shape in OFFICIAL_KEYS.values())
    assert sum(value.numel() for value in model.state_dict().values()) == total


def test_official_text_encoder_is_the_text_part() -> None:
    model = meta_build("official-bmlip")
    text_keys = [k for k in OFFICIAL_KEYS if not k.startswith("visual.") and k != "logit_scale"]
    assert sorted(model.text_encoder().state_dict()) == sorted(text_keys)
    assert model.spec == load_config("official-bmlip")


@pytest.mark.parametrize("name", ["official-bmlip", "bmlip-base"])
def test_large_configs_give_feature_shapes_on_meta(name: str) -> None:
    model = meta_build(name)
    size = model.visual.input_size
    image = torch.empty(3, 1, size, size, size, device="meta")
    ids = torch.zeros(3, 90, dtype=torch.long, device="meta")
    image_features, text_features = model(image, ids)
    assert image_features.shape == text_features.shape == (3, 768)


def test_official_forward_on_cpu() -> None:
    # The official image tower only takes its own input size (120^3); about 25 s and 5 GB on the
    # CPU, kept in the default suite so that every packaged config runs for real.
    model = build("official-bmlip").eval()
    with torch.no_grad():
        image_features, text_features = model(torch.rand(1, 1, 120, 120, 120), tokenize(PROMPTS[0]))
    assert image_features.shape == text_features.shape == (1, 768)
    assert torch.isfinite(image_features).all() and torch.isfinite(text_features).all()


def test_paper_size_forward_on_cpu() -> None:
    torch.manual_seed(0)
    model = build("bmlip-base").eval()
    assert isinstance(model.visual, ViT3D)
    with torch.no_grad():
        image_features, text_features = model(torch.rand(1, 1, 96, 96, 96), tokenize(PROMPTS[0]))
    assert image_features.shape == text_features.shape == (1, 768)
    assert torch.isfinite(image_features).all() and torch.isfinite(text_features).all()


# ----- configurations ---------------------------------------------------------------------------


def test_the_three_bmlip_configs_are_packaged() -> None:
    assert {"official-bmlip", "bmlip-base", "bmlip-tiny"} <= set(BMLIP_CONFIGS)


@pytest.mark.parametrize("name", BMLIP_CONFIGS)
def test_every_bmlip_config_builds(name: str) -> None:
    model = meta_build(name)
    assert isinstance(model, BMLIP)
    assert model.visual.embed_dim == model.text_encoder().embed_dim == model.embed_dim
    assert model.logit_scale.shape == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"text": {"width": 100}}, "text: width 100 is not divisible by heads 8"),
        ({"vision": {"kind": "vit", "input_size": 90}}, "input_size 90 is not divisible by"),
        ({"vision": {"kind": "resnet", "input_size": 16}}, "input_size 16 is too small"),
        ({"vision": {"kind": "transformer"}}, "vision"),
        ({"text": {"depth": 3}}, "text.depth"),
        ({"embed_dim": 0}, "embed_dim"),
    ],
)
def test_bad_configs_are_refused(args: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build({"name": "bmlip", "args": args})


# ----- the tiny model trains --------------------------------------------------------------------


def test_tiny_forward_and_backward_on_cpu() -> None:
    torch.manual_seed(0)
    model = build("bmlip-tiny")
    images = torch.rand(2, 1, 32, 32, 32)
    image_features, text_features = model(images, tokenize(PROMPTS[:2]))
    assert image_features.shape == text_features.shape == (2, 128)
    loss = contrastive_loss(image_features, text_features, model.logit_scale)
    loss.backward()
    assert torch.isfinite(loss)
    for name in ("logit_scale", "text_projection", "visual.proj.weight", "token_embedding.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_tiny_model_learns_to_match_pairs() -> None:
    torch.manual_seed(0)
    model = build("bmlip-tiny")
    # Four contrasts of one random "brain" (as T1w/T2w/... differ), four different prompts.
    brain = torch.rand(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0))
    images = torch.cat([brain**power for power in (0.3, 1.0, 3.0, 8.0)])
    ids = tokenize(PROMPTS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(10):
        loss = contrastive_loss(*model(images, ids), model.logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.clamp_logit_scale_()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(4), abs=0.3)
    assert losses[-1] < 0.25 * losses[0]


# ----- one owner per parameter ------------------------------------------------------------------


def test_text_encoder_shares_the_models_parameters() -> None:
    torch.manual_seed(0)
    model = build(small_resnet_spec()).eval()
    encoder = model.text_encoder()
    assert isinstance(encoder, TextEncoder) and not encoder.training
    assert encoder.token_embedding.weight is model.token_embedding.weight
    ids = tokenize(PROMPTS[:2])
    with torch.no_grad():
        torch.testing.assert_close(encoder(ids), model.encode_text(ids))
    # No TextEncoder is kept, so nothing goes stale when loading replaces the parameter objects.
    replacement = {
        key: torch.randn_like(value) if value.is_floating_point() else value.clone()
        for key, value in model.state_dict().items()
    }
    old_projection = model.text_projection
    model.load_state_dict(replacement, assign=True)
    assert model.text_projection is not old_projection
    assert model.text_encoder().text_projection is model.text_projection
    torch.testing.assert_close(model.text_projection.data, replacement["text_projection"])
    state = model.state_dict()
    assert len(state) == len({id(value) for value in state.values()})  # no key twice


def test_towers_of_different_widths_are_refused() -> None:
    text = TextEncoder(context_length=4, vocab_size=10, width=8, layers=1, heads=2, embed_dim=6)
    visual = ViT3D(input_size=8, patch_size=4, width=8, layers=1, heads=2, mlp_dim=8, embed_dim=5)
    with pytest.raises(ValueError, match="5-dimensional features, text tower 6"):
        BMLIP(visual, text)


# ----- contrastive loss -------------------------------------------------------------------------


def test_loss_is_symmetric() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(5, 12, generator=generator)
    text = torch.randn(5, 12, generator=generator)
    scale = torch.tensor(2.5)
    torch.testing.assert_close(
        contrastive_loss(image, text, scale), contrastive_loss(text, image, scale)
    )


@pytest.mark.parametrize("count", [2, 7])
def test_identical_features_give_log_n(count: int) -> None:
    features = torch.randn(1, 9).expand(count, 9)
    loss = contrastive_loss(features, 3 * features, math.log(1 / 0.07))
    assert loss.item() == pytest.approx(math.log(count), rel=1e-6)


def test_matched_orthogonal_pairs_give_almost_zero_loss() -> None:
    features = torch.eye(4)
    assert contrastive_loss(features, features, MAX_LOGIT_SCALE).item() < 1e-30


def test_logits_are_scaled_cosines_with_a_clamped_scale() -> None:
    generator = torch.Generator().manual_seed(1)
    image, text = torch.randn(3, 6, generator=generator), torch.randn(4, 6, generator=generator)
    cosines = F.cosine_similarity(image[:, None], text[None], dim=-1)
    torch.testing.assert_close(contrastive_logits(image, text, math.log(20.0)), 20.0 * cosines)
    torch.testing.assert_close(contrastive_logits(image, text, 9.0), 100.0 * cosines)
    torch.testing.assert_close(contrastive_logits(image, text, -1.0), cosines)


def test_loss_refuses_unpaired_features() -> None:
    with pytest.raises(ValueError, match="3 images and 4 texts"):
        contrastive_loss(torch.randn(3, 6), torch.randn(4, 6), 1.0)
    with pytest.raises(ValueError, match="6 dimensions, text features 5"):
        contrastive_loss(torch.randn(3, 6), torch.randn(3, 5), 1.0)


# ----- image towers -----------------------------------------------------------------------------


def test_resnet_grid_is_input_over_32_for_the_official_size() -> None:
    assert resnet_grid(120) == 3
    assert [resnet_grid(size) for size in (31, 32, 64, 96, 100)] == [1, 1, 2, 3, 3]


def test_small_resnet_shape_and_size_check() -> None:
    tower = ModifiedResNet3D((1, 1, 1, 1), embed_dim=16, input_size=64, width=8)
    assert tower.attnpool.positional_embedding.shape == (2**3 + 1, 256)
    assert tower(torch.rand(2, 1, 64, 64, 64)).shape == (2, 16)
    with pytest.raises(ValueError, match=r"spatial shape \(32, 32, 32\) does not fit"):
        tower(torch.rand(2, 1, 32, 32, 32))
    with pytest.raises(ValueError, match="must have 1 channel"):
        tower(torch.rand(2, 3, 64, 64, 64))


def test_attention_pool_equals_full_self_attention_at_the_mean_token() -> None:
    torch.manual_seed(0)
    pool = ModifiedResNet3D((1, 1, 1, 1), embed_dim=16, input_size=64, width=8).attnpool
    x = torch.randn(2, 256, 2, 2, 2)
    tokens = x.flatten(2).permute(2, 0, 1)
    tokens = torch.cat([tokens.mean(0, keepdim=True), tokens]) + pool.positional_embedding[:, None]
    full, _ = F.multi_head_attention_forward(
        tokens, tokens, tokens, 256, pool.heads, None,
        torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]), None, None, False, 0.0,
        pool.c_proj.weight, pool.c_proj.bias, use_separate_proj_weight=True,
        q_proj_weight=pool.q_proj.weight, k_proj_weight=pool.k_proj.weight,
        v_proj_weight=pool.v_proj.weight, need_weights=False,
    )  # fmt: skip
    torch.testing.assert_close(pool(x), full[0])


def test_residual_blocks_start_as_identity() -> None:
    tower = ModifiedResNet3D((2, 1, 1, 1), embed_dim=16, input_size=32, width=8)
    assert all(block.bn3.weight.abs().sum() == 0 for block in tower.layer1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"layers": (3, 4, 6)}, r"layers must hold 4 block counts, got \(3, 4, 6\)"),
        ({"width": 7}, "width 7 must be even"),
        ({"heads": 5}, "32 \\* width = 256 is not divisible by heads 5"),
        ({"input_size": 24}, "input_size 24 is too small"),
        ({"embed_dim": 0}, "embed_dim must be a positive integer, got 0"),
    ],
)
def test_resnet_bad_arguments(changes: dict, message: str) -> None:
    args = {"layers": (1, 1, 1, 1), "embed_dim": 16, "input_size": 32, "width": 8, **changes}
    with pytest.raises(ValueError, match=message):
        ModifiedResNet3D(args.pop("layers"), **args)


def test_small_vit_shape_and_size_check() -> None:
    tower = ViT3D(
        input_size=16, patch_size=8, width=32, layers=1, heads=2, mlp_dim=64, embed_dim=24
    )
    assert tower(torch.rand(2, 1, 16, 16, 16)).shape == (2, 24)
    with pytest.raises(ValueError, match=r"16\^3 voxels for this tower, got spatial shape \(8, 16"):
        tower(torch.rand(2, 1, 8, 16, 16))
    with pytest.raises(ValueError, match=r"5D tensor \(N, C, D, H, W\), got \(1, 16, 16, 16\)"):
        tower(torch.rand(1, 16, 16, 16))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input_size": 20}, "input_size 20 is not divisible by patch_size 8"),
        ({"width": 30, "heads": 4}, "width 30 is not divisible by heads 4"),
        ({"dropout_rate": 1.5}, r"dropout_rate must be in \[0, 1\], got 1.5"),
        ({"mlp_dim": 0}, "mlp_dim must be a positive integer, got 0"),
    ],
)
def test_vit_bad_arguments(changes: dict, message: str) -> None:
    args = {"input_size": 16, "patch_size": 8, "width": 32, "layers": 1, "heads": 2,
            "mlp_dim": 64, "embed_dim": 24, **changes}  # fmt: skip
    with pytest.raises(ValueError, match=message):
        ViT3D(**args)
