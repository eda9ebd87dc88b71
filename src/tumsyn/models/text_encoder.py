"""The metadata text encoder: CLIP's causal text transformer (trained in stage 1, frozen in 2).

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021;
TUMSyn (Wang et al.) uses it over 90-token metadata prompts. The attribute names below are the
official ones (``token_embedding``, ``positional_embedding``, ``transformer.resblocks.N.{attn, ln_1,
mlp.c_fc, mlp.c_proj, ln_2}``, ``ln_final``, ``text_projection``), so that the ``state_dict`` of a
:class:`TextEncoder` equals the text part of the official stage-1 checkpoint, key for key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TextEncoder", "check_text_encoder_args"]


def check_text_encoder_args(
    *, context_length: int, vocab_size: int, width: int, layers: int, heads: int, embed_dim: int
) -> None:
    """Raise ``ValueError`` quoting the value when the text settings cannot work together."""
    for name, value in (
        ("context_length", context_length),
        ("vocab_size", vocab_size),
        ("width", width),
        ("layers", layers),
        ("heads", heads),
        ("embed_dim", embed_dim),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if width % heads:
        raise ValueError(f"width {width} is not divisible by heads {heads}")


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype (safe under fp16/bf16)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        out = F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)
        return out.to(x.dtype)


class QuickGELU(nn.Module):
    """CLIP's GELU approximation ``x * sigmoid(1.702 x)``, which the released weights expect."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln_1(x), mask)``, then ``x + mlp(ln_2(x))``.

    Args:
        width: token width.
        heads: attention heads (``width`` divisible by it).
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", QuickGELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (N, L, width), ``mask`` (L, L) bool, True where attention is forbidden."""
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class CausalTransformer(nn.Module):
    """``resblocks``: :class:`ResidualAttentionBlock` layers, each token seeing only its past."""

    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.width = width
        self.layers = layers
        self.resblocks = nn.Sequential(
            *(ResidualAttentionBlock(width, heads) for _ in range(layers))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, L, width) -> (N, L, width)."""
        length = x.shape[1]
        # Built per call (cheap) rather than stored: nothing to keep in step with device or length.
        mask = torch.ones(length, length, dtype=torch.bool, device=x.device).triu_(1)
        for block in self.resblocks:
            x = block(x, mask)
        return x


class TextEncoder(nn.Module):
    """CLIP text transformer with end-of-text pooling: token ids -> one ``embed_dim`` vector each.

    Token and learned positional embeddings, ``layers`` causal pre-norm blocks (QuickGELU MLP of
    width ``4 * width``), a final LayerNorm, then the feature at the end-of-text token (the largest
    id of each row, as in CLIP) times ``text_projection``. The output is not normalised: stage 2 of
    TUMSyn conditions on this raw vector, and the contrastive loss normalises it.

    Args:
        context_length: positions of the learned positional embedding (90 in TUMSyn).
        vocab_size: token vocabulary size (49408 for CLIP's BPE).
        width: token width.
        layers: number of transformer blocks.
        heads: attention heads; ``width`` must be divisible by it.
        embed_dim: output (joint embedding) dimension.

    Example:
        >>> from tumsyn.text import tokenize
        >>> encoder = TextEncoder(context_length=90, vocab_size=49408, width=64, layers=1,
        ...                       heads=4, embed_dim=32)
        >>> encoder(tokenize(["Age: 30; Gender: F", "Age: 70; Gender: M"])).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        *,
        context_length: int,
        vocab_size: int,
        width: int,
        layers: int,
        heads: int,
        embed_dim: int,
    ) -> None:
        super().__init__()
        check_text_encoder_args(
            context_length=context_length,
            vocab_size=vocab_size,
            width=width,
            layers=layers,
            heads=heads,
            embed_dim=embed_dim,
        )
        self.context_length = context_length
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.empty(context_length, width))
        self.transformer = CausalTransformer(width, layers, heads)
        self.ln_final = LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim))
        self.reset_parameters()

    @property
    def width(self) -> int:
        return self.transformer.width

    def reset_parameters(self) -> None:
        """CLIP's initialisation: small normal embeddings, depth-scaled residual projections."""
        width, layers = self.transformer.width, self.transformer.layers
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        residual_std = width**-0.5 * (2 * layers) ** -0.5
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=width**-0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=residual_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=residual_std)
        nn.init.normal_(self.text_projection, std=width**-0.5)

    def _check_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"token ids must be a 2D tensor (N, context_length), got {shape}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"token ids must be an integer tensor, got {ids.dtype}")
        if not 1 <= ids.shape[1] <= self.context_length:
            raise ValueError(
                f"token ids have {ids.shape[1]} positions; this encoder takes 1 to "
                f"{self.context_length} (context_length)"
            )

    def token_features(self, ids: torch.Tensor) -> torch.Tensor:
        """Per-token features after ``ln_final``.

        Args:
            ids: (N, L) integer token ids, ``L <= context_length`` (the tokenizer gives
                ``L == context_length``; since attention is causal, dropping padding after the
                end-of-text token changes nothing before it).

        Returns:
            (N, L, width) features; position ``i`` depends on ``ids[:, : i + 1]`` only.
        """
        self._check_ids(ids)
        length = ids.shape[1]
        dtype = self.positional_embedding.dtype
        x = self.token_embedding(ids).to(dtype) + self.positional_embedding[:length]
        return self.ln_final(self.transformer(x))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Text features.

        Args:
            ids: (N, L) integer token ids (see :meth:`token_features`); each row's end-of-text
                token is its largest id.

        Returns:
            (N, embed_dim) unnormalised features at each row's end-of-text position.
        """
        features = self.token_features(ids)
        rows = torch.arange(ids.shape[0], device=ids.device)
        return features[rows, ids.argmax(dim=-1)] @ self.text_projection

    def prompt_tokens(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected features of every token up to the end token, for per-voxel cross-attention.

        Args:
            ids: (N, L) integer token ids.

        Returns:
            ``(tokens, mask)``: (N, L, embed_dim) features and an (N, L) boolean mask that is True
            from the start token to the end token and False on the padding after it.
        """
        tokens = self.token_features(ids) @ self.text_projection
        positions = torch.arange(ids.shape[1], device=ids.device)
        mask = positions[None, :] <= ids.argmax(dim=-1, keepdim=True)
        return tokens, mask

    @torch.no_grad()
    def features(
        self, prompts: Sequence[str], *, pooled: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A conditioner's answer (:mod:`tumsyn.models.conditioners`): the pooled vectors
        ``(N, embed_dim)``, or every prompt's tokens and mask (:meth:`prompt_tokens`)."""
        from tumsyn.text import tokenize  # here: the tokenizer's vocabulary loads on first use

        ids = tokenize(list(prompts)).to(self.text_projection.device)
        if pooled:
            return self(ids), None
        return self.prompt_tokens(ids)

    @classmethod
    def _from_parts(
        cls,
        *,
        token_embedding: nn.Embedding,
        positional_embedding: nn.Parameter,
        transformer: CausalTransformer,
        ln_final: nn.LayerNorm,
        text_projection: nn.Parameter,
    ) -> TextEncoder:
        """A TextEncoder made of existing modules and parameters (shared, nothing copied)."""
        encoder = cls.__new__(cls)
        nn.Module.__init__(encoder)
        encoder.context_length = positional_embedding.shape[0]
        encoder.vocab_size = token_embedding.num_embeddings
        encoder.embed_dim = text_projection.shape[1]
        encoder.token_embedding = token_embedding
        encoder.positional_embedding = positional_embedding
        encoder.transformer = transformer
        encoder.ln_final = ln_final
        encoder.text_projection = text_projection
        return encoder
