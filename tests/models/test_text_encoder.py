"""The CLIP text tower: official parameter names, end-of-text pooling, causal attention."""

from __future__ import annotations

import json

import pytest
import torch

from helpers import DATA
from tumsyn.models.fusion import VoxelCrossAttentionFusion
from tumsyn.models.text_encoder import TextEncoder
from tumsyn.text import tokenize

OFFICIAL_KEYS = json.loads((DATA / "official_bmlip_keys.json").read_text(encoding="utf-8"))
SMALL = {
    "context_length": 12,
    "vocab_size": 50,
    "width": 16,
    "layers": 2,
    "heads": 4,
    "embed_dim": 8,
}


def small_encoder(**changes: int) -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(**{**SMALL, **changes}).eval()


def test_state_dict_is_the_official_text_part() -> None:
    with torch.device("meta"):
        encoder = TextEncoder(
            context_length=90, vocab_size=49408, width=512, layers=8, heads=8, embed_dim=768
        )
    expected = {
        key: shape
        for key, shape in OFFICIAL_KEYS.items()
        if not key.startswith("visual.") and key != "logit_scale"
    }
    assert {key: list(value.shape) for key, value in encoder.state_dict().items()} == expected


def test_real_prompts_give_one_vector_each() -> None:
    encoder = TextEncoder(
        context_length=90, vocab_size=49408, width=32, layers=1, heads=4, embed_dim=24
    )
    ids = tokenize(["Age: 30; Gender: F; Modality: T1w", "Age: 70; Gender: M; Modality: FLAIR"])
    features = encoder(ids)
    assert features.shape == (2, 24)
    assert torch.isfinite(features).all()
    assert not torch.allclose(features[0], features[1])


def test_pooling_reads_the_largest_id_position() -> None:
    encoder = small_encoder()
    # The end-of-text token (largest id, 49) sits at a different position in each row.
    ids = torch.tensor(
        [
            [1, 5, 7, 49, 0, 0, 0, 0, 0, 0, 0, 0],
            [1, 3, 4, 9, 9, 2, 49, 0, 0, 0, 0, 0],
            [1, 49, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    with torch.no_grad():
        tokens = encoder.token_features(ids)
        pooled = encoder(ids)
    positions = [3, 6, 1]
    for row, position in enumerate(positions):
        torch.testing.assert_close(pooled[row], tokens[row, position] @ encoder.text_projection)
        other = tokens[row, position + 1] @ encoder.text_projection
        assert not torch.allclose(pooled[row], other)


def test_attention_is_causal() -> None:
    encoder = small_encoder()
    ids = torch.randint(1, 40, (2, 12), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 7] = 45
    with torch.no_grad():
        before, after = encoder.token_features(ids), encoder.token_features(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7])
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_padding_after_end_of_text_changes_nothing() -> None:
    encoder = small_encoder()
    ids = torch.tensor([[1, 8, 9, 49, 0, 0, 0, 0, 0, 0, 0, 0]])
    noisy = ids.clone()
    noisy[0, 4:] = torch.tensor([3, 5, 7, 11, 13, 17, 19, 23])
    with torch.no_grad():
        reference = encoder(ids)
        torch.testing.assert_close(encoder(noisy), reference)
        torch.testing.assert_close(encoder(ids[:, :4]), reference)  # trailing padding dropped


def test_initialisation_follows_clip() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(
        context_length=90, vocab_size=2000, width=64, layers=4, heads=4, embed_dim=32
    )
    assert encoder.token_embedding.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert encoder.positional_embedding.std().item() == pytest.approx(0.01, rel=0.1)
    assert encoder.text_projection.std().item() == pytest.approx(64**-0.5, rel=0.1)
    residual = encoder.transformer.resblocks[0].mlp.c_proj.weight.std().item()
    assert residual == pytest.approx(64**-0.5 * 8**-0.5, rel=0.1)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"width": 18}, "width 18 is not divisible by heads 4"),
        ({"layers": 0}, "layers must be a positive integer, got 0"),
        ({"context_length": -1}, "context_length must be a positive integer, got -1"),
        ({"embed_dim": 2.5}, "embed_dim must be a positive integer, got 2.5"),
    ],
)
def test_bad_arguments_are_refused(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TextEncoder(**{**SMALL, **changes})


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (torch.zeros(12, dtype=torch.long), r"2D tensor \(N, context_length\), got \(12,\)"),
        (torch.zeros(2, 12), "integer tensor, got torch.float32"),
        (torch.zeros(2, 13, dtype=torch.long), "13 positions; this encoder takes 1 to 12"),
    ],
)
def test_bad_ids_are_refused(ids: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_encoder()(ids)


def test_a_bfloat16_copy_agrees_with_float32() -> None:
    encoder = small_encoder()
    ids = torch.randint(1, 40, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = encoder(ids)
        low = encoder.to(torch.bfloat16)(ids)  # LayerNorms still compute in float32
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), reference, atol=0.05, rtol=0.05)


def test_prompt_tokens_feed_the_voxel_fusion() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(
        context_length=90, vocab_size=49408, width=32, layers=1, heads=4, embed_dim=16
    )
    ids = tokenize(["Age: 30; Modality: T1w", "Age: 70; Gender: M; Modality: FLAIR"])
    tokens, mask = encoder.prompt_tokens(ids)
    assert tokens.shape == (2, 90, 16) and mask.shape == (2, 90)
    assert mask.sum(dim=1).tolist() == [(row > 0).sum().item() for row in ids]  # start..end
    pooled = encoder(ids)
    torch.testing.assert_close(tokens[torch.arange(2), ids.argmax(dim=-1)], pooled)
    fusion = VoxelCrossAttentionFusion(dim=8, text_dim=16, heads=2)
    assert fusion(torch.randn(2, 8, 3, 3, 3), tokens, mask).shape == (2, 8, 3, 3, 3)
