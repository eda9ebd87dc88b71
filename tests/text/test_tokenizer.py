"""The tokenizer must give exactly the reference CLIP ids, or published checkpoints read garbage.

Fixtures:
- ``data/clip_token_ids.json``: 26 varied prompts (all seven modalities, None values, T2var,
  long decimals, upper case, extra whitespace, HTML entities, non-ASCII text and emoji, the empty
  string) with ids computed once by the reference implementation; its "how" field records how.
- ``data/official_clip_token_examples.json``: prompts and ids measured from the official TUMSyn
  tokenizer (copied from the project's shared reference facts).
"""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources

import pytest
import torch

from helpers import DATA
from tumsyn.errors import PromptTooLongError
from tumsyn.text import CONTEXT_LENGTH, ClipTokenizer, tokenize
from tumsyn.text.tokenizer import END_OF_TEXT, START_OF_TEXT

REFERENCE = json.loads((DATA / "clip_token_ids.json").read_text(encoding="utf-8"))["examples"]
OFFICIAL = json.loads((DATA / "official_clip_token_examples.json").read_text(encoding="utf-8"))


def test_shipped_vocabulary_is_clips() -> None:
    raw = resources.files("tumsyn.text").joinpath("bpe_simple_vocab_16e6.txt.gz").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == (
        "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
    )
    assert (
        gzip.decompress(raw).decode("utf-8").startswith('"bpe_simple_vocab_16e6.txt#version: 0.2')
    )


def test_at_least_twenty_reference_prompts() -> None:
    assert len(REFERENCE) >= 20


@pytest.mark.parametrize("example", REFERENCE, ids=lambda e: e["prompt"][:40])
def test_ids_equal_reference_implementation(example: dict) -> None:
    tokenizer = ClipTokenizer(context_length=128)
    row = tokenizer(example["prompt"])[0].tolist()
    expected = example["ids"]
    assert row[: len(expected)] == expected
    assert all(i == 0 for i in row[len(expected) :])


@pytest.mark.parametrize("example", OFFICIAL, ids=lambda e: e["prompt"][:40])
def test_ids_equal_official_tokenizer(example: dict) -> None:
    assert tokenize(example["prompt"])[0].tolist() == example["ids"]


def test_batch_shape_dtype_and_layout() -> None:
    prompts = [e["prompt"] for e in OFFICIAL[:3]]
    ids = tokenize(prompts)
    assert ids.shape == (3, CONTEXT_LENGTH)
    assert ids.dtype == torch.long
    assert (ids[:, 0] == START_OF_TEXT).all()
    lengths = (ids != 0).sum(dim=1)
    for row, length in zip(ids, lengths, strict=True):
        assert row[length - 1] == END_OF_TEXT


def test_too_long_prompt_is_an_error_not_a_truncation() -> None:
    long_prompts = [e["prompt"] for e in REFERENCE if len(e["ids"]) > CONTEXT_LENGTH]
    assert long_prompts, "the fixture must hold a prompt longer than the context"
    with pytest.raises(PromptTooLongError, match="tokens"):
        tokenize(long_prompts[0])
    assert ClipTokenizer().count(long_prompts[0]) > CONTEXT_LENGTH


def test_decode_gives_back_the_cleaned_text() -> None:
    tokenizer = ClipTokenizer()
    ids = tokenizer("Modality: T2w pondérée")[0].tolist()
    assert tokenizer.decode(ids) == "modality : t 2 w pondérée"


def test_custom_context_length_and_bad_value() -> None:
    assert tokenize("Age: 16", context_length=8).shape == (1, 8)
    with pytest.raises(ValueError, match="context_length"):
        ClipTokenizer(context_length=1)
