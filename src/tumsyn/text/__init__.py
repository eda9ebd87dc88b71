"""Prompt text -> CLIP token ids, as the TUMSyn text encoder expects them."""

from tumsyn.text.tokenizer import CONTEXT_LENGTH, ClipTokenizer, tokenize

__all__ = ["CONTEXT_LENGTH", "ClipTokenizer", "tokenize"]
