"""Small building blocks shared by the synthesis models."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "ChannelLayerNorm"]


class MLP(nn.Module):
    """Linear layers with ReLU between them: ``in_dim -> hidden... -> out_dim``.

    The layers live in ``self.layers`` (an ``nn.Sequential``), the parameter layout of the official
    code's ``Linear`` (``layers.0``, ``layers.2``, ...), so official weights load unchanged.

    Args:
        in_dim: input features.
        out_dim: output features.
        hidden: widths of the hidden layers.

    Shapes: ``(..., in_dim) -> (..., out_dim)``.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = ()) -> None:
        super().__init__()
        widths = [in_dim, *hidden, out_dim]
        if any(w < 1 for w in widths):
            raise ValueError(f"MLP widths must be positive, got {widths}")
        layers: list[nn.Module] = []
        for index, (a, b) in enumerate(itertools.pairwise(widths)):
            if index:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(a, b))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _LayerNormWeights(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class ChannelLayerNorm(nn.Module):
    """Layer normalisation over the channels of a ``(B, C, D, H, W)`` feature map.

    Every voxel's feature vector is normalised on its own (biased variance, eps 1e-5), as the
    official fusion block does; the weights sit in ``self.body`` to match its parameter names.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.body = _LayerNormWeights(channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = nn.functional.layer_norm(
            x.movedim(1, -1), x.shape[1:2], self.body.weight, self.body.bias, self.eps
        )
        return normalised.movedim(-1, 1)
