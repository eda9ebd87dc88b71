"""Text-to-image fusion: how the prompt's text features condition the image features.

Two blocks, both ending in the official gated depth-wise feed-forward and channel LayerNorms:

- :class:`GlobalTextFusion` is the official TUMSyn block (parameter names and shapes of its
  ``Basic_block``): a text adapter (MLP) maps the prompt's single text vector to a query; the image
  features give keys and values; the attention output scales the feature map channel-wise. With
  ``official_quirks=True`` it reproduces the official arithmetic exactly: keys/values reshaped from
  ``(B, 2C, D, H, W)`` memory without a permute (its "tokens" are chunks of memory, not voxels), and
  L2-normalised queries and keys without a temperature (a softmax over cosines in [-1, 1], nearly
  uniform over thousands of tokens). With ``official_quirks=False`` tokens are voxels and the
  attention is scaled dot-product, as the paper describes.
- :class:`VoxelCrossAttentionFusion` is tumsyn's own: every voxel attends over the prompt's token
  features (all positions up to the end token, not only the pooled vector), scaled dot-product
  attention with residual connections and pre-normalisation, so that different voxels can read
  different parts of the prompt.
- :class:`ModulatedVoxelFusion` adds to it a channel-wise scale and shift of every voxel's
  features from the prompt's summary token (FiLM, Perez et al. 2018). Why: a stage-1 text tower
  separates two prompts by their summary (the pooled vector that CLIP's loss shapes) far more than
  by the average of their tokens, which the cross-attention mostly reads (model v2's tower: a 3 T
  FLAIR and an SWI prompt at cosine 0.16 pooled, 0.77 averaged over tokens). Model v2's networks
  use it; with it their FLAIR nulls CSF and their SWI follows its target (docs/decisions.md,
  "FLAIR is answered as SWI").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tumsyn.models.layers import MLP, ChannelLayerNorm

__all__ = ["GlobalTextFusion", "ModulatedVoxelFusion", "VoxelCrossAttentionFusion"]


def _check_heads(dim: int, heads: int) -> None:
    if dim < 1 or heads < 1 or dim % heads:
        raise ValueError(f"dim {dim} must be a positive multiple of heads {heads}")


class GatedFeedForward(nn.Module):
    """1x1 conv to ``hidden``, 3x3x3 depth-wise conv, GELU gate (half gates half), 1x1 conv back.

    The hidden activations are ``hidden / dim`` times the input (4x, 3.2 GB for the official
    768 -> 3072 on a 64^3 patch), so a large input is processed in slabs along depth of about
    ``slab_bytes`` of hidden activations, each with a one-voxel halo. ``project_in`` has no bias,
    so zero input padding is the depth-wise convolution's zero padding: the result is the same.

    It runs in the input's memory order; in channels-last order (the voxel fusions') PyTorch's
    CPU depth-wise 3-D convolution is several times faster (docs/decisions.md).
    """

    slab_bytes = 2**28

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(
                f"hidden width {hidden} must be even (half of it gates the other half)"
            )
        self.project_in = nn.Conv3d(dim, hidden, kernel_size=1, bias=False)
        self.dwconv = nn.Conv3d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.project_out = nn.Conv3d(hidden // 2, dim, kernel_size=1, bias=False)

    def _gated(self, x: torch.Tensor, depth_padding: int) -> torch.Tensor:
        hidden = F.conv3d(
            self.project_in(x),
            self.dwconv.weight,
            padding=(depth_padding, 1, 1),
            groups=self.dwconv.groups,
        )
        value, gate = hidden.chunk(2, dim=1)
        return self.project_out(F.gelu(value) * gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, depth, height, width = x.shape
        plane = b * self.dwconv.out_channels * height * width * x.element_size()
        slab = max(1, self.slab_bytes // plane)
        if depth <= slab:
            return self._gated(x, depth_padding=1)
        padded = F.pad(x, (0, 0, 0, 0, 1, 1))
        return torch.cat(
            [self._gated(padded[:, :, z : z + slab + 2], 0) for z in range(0, depth, slab)], dim=2
        )


class _TextQueryAttention(nn.Module):
    """One text vector queries the voxels; returns a channel-wise scale ``(B, C, 1, 1, 1)``."""

    def __init__(self, dim: int, heads: int, official_quirks: bool) -> None:
        super().__init__()
        self.q = nn.Conv3d(dim, dim, kernel_size=1)
        self.kv = nn.Conv3d(dim, dim * 2, kernel_size=1)
        self.proj = nn.Conv3d(dim, dim, kernel_size=1)
        self.heads = heads
        self.official_quirks = official_quirks

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        n = x[0, 0].numel()
        head_dim = c // self.heads
        q = self.q(text[:, :, None, None, None]).reshape(b, self.heads, 1, head_dim)
        kv = self.kv(x)
        if self.official_quirks:
            k, v = kv.reshape(b, n, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4)
            q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
            weights = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        else:
            k, v = kv.reshape(b, 2, self.heads, head_dim, n).transpose(-2, -1).unbind(1)
            weights = (q @ k.transpose(-2, -1) * head_dim**-0.5).softmax(dim=-1)
        out = (weights @ v).reshape(b, c, 1, 1, 1)
        return self.proj(out)


class _GlobalTextBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, official_quirks: bool) -> None:
        super().__init__()
        self.norm2 = ChannelLayerNorm(dim)
        self.norm3 = ChannelLayerNorm(dim)
        self.c_attn = _TextQueryAttention(dim, heads, official_quirks)
        self.text_lora = MLP(dim, dim, [dim])
        self.mlp = GatedFeedForward(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = x * self.c_attn(x, self.text_lora(text))
        x = self.norm2(x)
        return self.norm3(x + self.mlp(x))


class GlobalTextFusion(nn.Module):
    """The official fusion block: ``(B, C, D, H, W), (B, C) -> (B, C, D, H, W)``.

    Args:
        dim: feature and text dimension (official: 768; the text vector must have this size).
        heads: attention heads (official: 8).
        mlp_ratio: feed-forward width over ``dim`` (official: 4).
        depth: stacked blocks (official: 1).
        official_quirks: reproduce the official arithmetic (see the module docstring).
    """

    def __init__(
        self,
        *,
        dim: int = 768,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        depth: int = 1,
        official_quirks: bool = True,
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        self.block = nn.ModuleList(
            _GlobalTextBlock(dim, heads, mlp_ratio, official_quirks) for _ in range(depth)
        )

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``text``: the pooled prompt vector ``(B, C)`` (or ``(B, 1, C)``); no mask is used."""
        text = text.reshape(text.shape[0], -1)
        for block in self.block:
            x = block(x, text)
        return x


class _VoxelCrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, text_dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_attention = ChannelLayerNorm(dim)
        self.to_q = nn.Conv3d(dim, dim, kernel_size=1)
        self.to_k = nn.Linear(text_dim, dim)
        self.to_v = nn.Linear(text_dim, dim)
        self.to_out = nn.Conv3d(dim, dim, kernel_size=1)
        self.norm_feed_forward = ChannelLayerNorm(dim)
        self.feed_forward = GatedFeedForward(dim, int(dim * mlp_ratio))
        self.heads = heads

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor | None):
        """Attention runs on voxels as rows ``(B, N, C)``: the 1x1 convolutions are matrix
        products there and the result returns in channels-last order, which the feed-forward
        block wants (see :class:`GatedFeedForward`)."""
        b, c, *spatial = x.shape
        head_dim = c // self.heads
        tokens, mask = _trim_padding(tokens, mask)
        voxels = self.norm_attention(x).movedim(1, -1).reshape(b, -1, c)
        q = _pointwise(self.to_q, voxels).view(b, -1, self.heads, head_dim).transpose(1, 2)
        k = self.to_k(tokens).reshape(b, -1, self.heads, head_dim).transpose(1, 2)
        v = self.to_v(tokens).reshape(b, -1, self.heads, head_dim).transpose(1, 2)
        attention_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask)
        out = _pointwise(self.to_out, out.transpose(1, 2).reshape(b, -1, c))
        x = x + out.view(b, *spatial, c).movedim(-1, 1)
        return x + self.feed_forward(self.norm_feed_forward(x))


def _pointwise(conv: nn.Conv3d, rows: torch.Tensor) -> torch.Tensor:
    """A 1x1x1 convolution applied to feature rows ``(..., C_in) -> (..., C_out)``."""
    return F.linear(rows, conv.weight.flatten(1), conv.bias)


def _trim_padding(tokens: torch.Tensor, mask: torch.Tensor | None):
    """Drop the padding positions that no prompt of the batch uses: masked keys get no weight,
    so the attention is the same, and a prompt's real tokens are a fraction of the context."""
    if mask is None or mask.all():
        return tokens, mask
    used = int(mask.any(dim=0).nonzero().max()) + 1 if mask.any() else 1
    return tokens[:, :used], mask[:, :used]


class VoxelCrossAttentionFusion(nn.Module):
    """Per-voxel cross-attention over prompt tokens: ``(B, C, D, H, W) -> (B, C, D, H, W)``.

    Args:
        dim: image feature dimension.
        text_dim: dimension of the text token features.
        heads: attention heads (``dim`` must be divisible by it).
        mlp_ratio: feed-forward width over ``dim``.
        depth: stacked blocks.

    ``forward(x, text, text_mask)``: ``text`` is ``(B, L, text_dim)`` token features (or a pooled
    ``(B, text_dim)`` vector, one token); ``text_mask`` ``(B, L)`` is True for real tokens.
    """

    def __init__(
        self, *, dim: int, text_dim: int, heads: int = 8, mlp_ratio: float = 4.0, depth: int = 1
    ) -> None:
        super().__init__()
        _check_heads(dim, heads)
        if text_dim < 1 or depth < 1:
            raise ValueError(f"text_dim and depth must be positive, got {text_dim}, {depth}")
        self.blocks = nn.ModuleList(
            _VoxelCrossAttentionBlock(dim, text_dim, heads, mlp_ratio) for _ in range(depth)
        )

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = text[:, None, :] if text.ndim == 2 else text
        # Channels-last order: the attention reads voxels as rows without a copy, and the
        # feed-forward block is faster in it (see GatedFeedForward); the result is the same.
        x = x.contiguous(memory_format=torch.channels_last_3d)
        for block in self.blocks:
            x = block(x, tokens, text_mask)
        return x


def summary_token(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The last real token of each prompt ``(B, L, E) -> (B, E)``: a causal (CLIP-style) text
    tower's end token, whose projection is the pooled prompt vector; a one-token conditioner's
    only token."""
    if mask is None:
        return tokens[:, -1]
    last = mask.long().cumsum(dim=1).argmax(dim=1)  # first index of the highest count: last True
    return tokens[torch.arange(tokens.shape[0], device=tokens.device), last]


class ModulatedVoxelFusion(VoxelCrossAttentionFusion):
    """:class:`VoxelCrossAttentionFusion`, then ``x * (1 + scale) + shift`` per channel, with
    ``scale`` and ``shift`` a linear map of the layer-normalised summary token
    (:func:`summary_token`).

    The map starts at zero, so the block starts as the plain voxel fusion: a network trained
    without it can be fine-tuned into this one (``init:`` of stage-2 training).
    """

    def __init__(
        self, *, dim: int, text_dim: int, heads: int = 8, mlp_ratio: float = 4.0, depth: int = 1
    ) -> None:
        super().__init__(dim=dim, text_dim=text_dim, heads=heads, mlp_ratio=mlp_ratio, depth=depth)
        self.to_scale_shift = nn.Linear(text_dim, 2 * dim)
        nn.init.zeros_(self.to_scale_shift.weight)
        nn.init.zeros_(self.to_scale_shift.bias)

    def forward(
        self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        tokens = text[:, None, :] if text.ndim == 2 else text
        summary = summary_token(tokens, text_mask)
        summary = F.layer_norm(summary, summary.shape[-1:])
        scale, shift = self.to_scale_shift(summary)[:, :, None, None, None].chunk(2, dim=1)
        return super().forward(x, tokens, text_mask) * (1 + scale) + shift
