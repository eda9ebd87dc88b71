"""CLIP byte-pair-encoding tokenizer, id-for-id equal to the reference CLIP tokenizer.

TUMSyn's text encoder was trained on ids from OpenAI CLIP's ``SimpleTokenizer`` with the
``bpe_simple_vocab_16e6`` vocabulary and a context length of 90, so any published checkpoint only
understands exactly those ids. Rather than re-implement byte-pair encoding, we load the same merge
list into Hugging Face ``tokenizers`` (a maintained Rust implementation) and configure it the way
the reference splits text; the reference's text cleanup (``ftfy``, double HTML unescape, whitespace
collapse, lower case) is applied in Python first. ``tests/text/test_tokenizer.py`` pins the result
against ids computed with the reference implementation.

The vocabulary file ships with the package (MIT licence, OpenAI CLIP; see ``text/VOCAB_LICENSE``).
"""

from __future__ import annotations

import gzip
import html
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from tumsyn.errors import PromptTooLongError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CONTEXT_LENGTH",
    "END_OF_TEXT",
    "START_OF_TEXT",
    "ClipTokenizer",
    "tokenize",
]

CONTEXT_LENGTH = 90
"""Tokens per prompt in TUMSyn (CLIP uses 77; the paper's prompts need more)."""

START_OF_TEXT = 49406
END_OF_TEXT = 49407
_NOT_TEXT = frozenset({0, START_OF_TEXT, END_OF_TEXT})

_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
# The reference uses the first 48,894 merges of the file (line 0 is a version header): together
# with the 512 byte symbols and the 2 special tokens that makes CLIP's 49,408-entry vocabulary.
_NUM_MERGES = 49152 - 256 - 2
# The reference's word splitter: contractions, runs of letters, single digits, runs of other
# non-space characters. Each digit is its own token, which is why numbers cost so many tokens.
_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
_WHITESPACE = re.compile(r"\s+")


@cache
def _byte_symbols() -> dict[int, str]:
    """Byte -> printable stand-in, in the reference's id order (dict order = id order).

    GPT-2/CLIP byte-level BPE maps every byte to a visible unicode character so that merges never
    involve whitespace or control characters: printable Latin-1 bytes stand for themselves, the
    others get the characters from U+0100 on.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    symbols = {b: chr(b) for b in printable}
    others = (b for b in range(256) if b not in symbols)
    symbols.update({b: chr(256 + n) for n, b in enumerate(others)})
    return symbols


def _clean(text: str) -> str:
    """The reference's cleanup: fix mojibake, unescape HTML twice, collapse spaces, lower-case."""
    import ftfy  # imported here so that `import tumsyn.text` stays cheap

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return _WHITESPACE.sub(" ", text).strip().lower()


class ClipTokenizer:
    """Turns prompts into fixed-length CLIP token ids.

    Args:
        context_length: number of ids per prompt, start and end tokens included (90 in TUMSyn).

    Example:
        >>> ClipTokenizer()(["Age: 16; Gender: F"]).shape
        torch.Size([1, 90])
    """

    def __init__(self, *, context_length: int = CONTEXT_LENGTH) -> None:
        if context_length < 2:
            raise ValueError(
                f"context_length must be at least 2 (start + end token), got {context_length}"
            )
        self.context_length = context_length
        self._bpe = _load_bpe()

    def encode(self, text: str) -> list[int]:
        """BPE ids of ``text`` without start/end tokens and without padding."""
        return self._bpe.encode(_clean(text)).ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text for ids, start/end tokens and padding dropped: the cleaned text the model sees."""
        symbols = "".join(self._bpe.id_to_token(i) for i in ids if i not in _NOT_TEXT)
        to_byte = {symbol: byte for byte, symbol in _byte_symbols().items()}
        text = bytes(to_byte[c] for c in symbols).decode("utf-8", errors="replace")
        return text.replace("</w>", " ").strip()

    def count(self, text: str) -> int:
        """Number of ids ``text`` needs, start and end tokens included."""
        return len(self.encode(text)) + 2

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """Ids of shape ``(N, context_length)``, int64: start, BPE ids, end, zero padding.

        Raises:
            PromptTooLongError: a prompt needs more than ``context_length`` ids. Truncating would
                silently drop imaging parameters, which is worse than refusing.
        """
        import torch  # here, not at the top: `tumsyn prompt` checks lengths without loading torch

        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [START_OF_TEXT, *self.encode(text), END_OF_TEXT]
            if len(ids) > self.context_length:
                raise PromptTooLongError(
                    f"prompt needs {len(ids)} tokens but the context length is "
                    f"{self.context_length}: shorten it (fewer decimals, fewer fields): {text!r}"
                )
            out[row, : len(ids)] = torch.tensor(ids)
        return out


@cache
def _load_bpe():
    """Build the ``tokenizers`` BPE model from the shipped merge list (once per process)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers

    with resources.files("tumsyn.text").joinpath(_VOCAB_FILE).open("rb") as raw:
        lines = gzip.decompress(raw.read()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : _NUM_MERGES + 1]]
    symbols = list(_byte_symbols().values())
    vocab_list = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges)]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}

    bpe = Tokenizer(models.BPE(vocab=vocab, merges=merges, end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_SPLIT_PATTERN), behavior="removed", invert=True),
            # The words are already split; ByteLevel must only map bytes to symbols.
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    return bpe


@cache
def _default_tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def tokenize(texts: str | Sequence[str], *, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
    """Token ids of shape ``(N, context_length)`` for one prompt or a list of prompts.

    Example:
        >>> tokenize("Age: 16; Gender: F; Modality: T2w")[0, :3].tolist()
        [49406, 805, 281]
    """
    if context_length == CONTEXT_LENGTH:
        return _default_tokenizer()(texts)
    return ClipTokenizer(context_length=context_length)(texts)
