"""Implicit decoders: the intensity at any continuous coordinate from a feature grid.

Coordinates follow LIIF (Chen Y. et al., "Learning continuous image representation with local
implicit image function", CVPR 2021): a grid of ``n`` voxels spans [-1, 1] along each axis, voxel
``i`` has its centre at ``-1 + (2 i + 1) / n``; coordinates are ``(z, y, x)`` in the order of the
array axes ``(D, H, W)``. ``cell`` is the size of a target voxel in the same units (``2 / n_out``).

- :class:`OfficialDecoder` is TUMSyn's: the feature grid is sampled trilinearly at the coordinate
  and the absolute coordinate is appended (``C + 3`` inputs), then an MLP. No cell size, so the
  decoder cannot know the output resolution; no local ensemble.
- :class:`LocalImplicitDecoder` is full LIIF in 3D: the nearest feature vector of each of the 8
  surrounding voxels (optionally unfolded with its 3x3x3 neighbourhood), the coordinate *relative*
  to that voxel, the cell size, an MLP per neighbour, and a local ensemble weighted by the volume of
  the opposite sub-cell, which makes the output continuous between voxels.

Both evaluate coordinates in chunks (``chunk_size`` points at a time) so that decoding a large
output never holds a ``(points, hidden)`` activation for all points at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tumsyn.models.layers import MLP

__all__ = ["LocalImplicitDecoder", "OfficialDecoder", "cell_centres", "sample_grid"]


def cell_centres(shape: Sequence[int], *, flatten: bool = True) -> torch.Tensor:
    """Voxel-centre coordinates of a grid in [-1, 1]: ``(prod(shape), 3)`` or ``(*shape, 3)``."""
    axes = [(torch.arange(n, dtype=torch.float32) * 2 + 1) / n - 1 for n in shape]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    return grid.reshape(-1, len(shape)) if flatten else grid


def sample_grid(
    feat: torch.Tensor, coord: torch.Tensor, mode: str = "bilinear", padding: str = "zeros"
) -> torch.Tensor:
    """``feat`` (B, C, D, H, W) at ``coord`` (B, Q, 3) in (z, y, x) order -> (B, Q, C)."""
    grid = coord.flip(-1)[:, :, None, None, :]  # grid_sample wants (x, y, z)
    sampled = F.grid_sample(feat, grid, mode=mode, padding_mode=padding, align_corners=False)
    return sampled[:, :, :, 0, 0].transpose(1, 2)


def _in_chunks(function, coord: torch.Tensor, *others, chunk_size: int | None) -> torch.Tensor:
    if chunk_size is None or coord.shape[1] <= chunk_size:
        return function(coord, *others)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    parts = [
        function(coord[:, i : i + chunk_size], *(o[:, i : i + chunk_size] for o in others))
        for i in range(0, coord.shape[1], chunk_size)
    ]
    return torch.cat(parts, dim=1)


class OfficialDecoder(nn.Module):
    """TUMSyn's decoder: trilinear feature + absolute coordinate -> MLP -> intensity.

    Args:
        in_channels: feature channels (official: 768).
        hidden: MLP hidden widths (official: 3072, 3072, 768, 256).
        out_channels: predicted channels (1).

    ``forward(feat (B, C, D, H, W), coord (B, Q, 3), cell=None) -> (B, Q, out_channels)``; the
    official code samples with zero padding outside the grid, as here.
    """

    def __init__(
        self, *, in_channels: int = 768, hidden: Sequence[int] = (3072, 3072, 768, 256),
        out_channels: int = 1,
    ) -> None:  # fmt: skip
        super().__init__()
        # The MLP's layers sit directly on the decoder, as the official ``imnet.layers.*``.
        self.layers = MLP(in_channels + 3, out_channels, hidden).layers

    def _decode(self, coord: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat([sample_grid(feat, coord), coord], dim=-1))

    def forward(
        self,
        feat: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        return _in_chunks(lambda c: self._decode(c, feat), coord, chunk_size=chunk_size)


class LocalImplicitDecoder(nn.Module):
    """Full 3D LIIF: local ensemble over 8 neighbours, relative coordinates, cell size.

    Args:
        in_channels: feature channels.
        hidden: MLP hidden widths.
        out_channels: predicted channels.
        unfold: concatenate each feature vector with its 3x3x3 neighbourhood (27x channels).

    ``forward(feat, coord (B, Q, 3), cell (B, Q, 3)) -> (B, Q, out_channels)``.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        hidden: Sequence[int] = (256, 256, 256),
        out_channels: int = 1,
        unfold: bool = False,
    ) -> None:
        super().__init__()
        self.unfold = unfold
        features = in_channels * (27 if unfold else 1)
        self.layers = MLP(features + 6, out_channels, hidden).layers

    def _decode(self, coord, cell, feat, centres):
        size = torch.tensor(feat.shape[2:], dtype=coord.dtype, device=coord.device)
        radius = 1.0 / size  # half a voxel in [-1, 1] units
        predictions, volumes = [], []
        for corner in itertools.product((-1.0, 1.0), repeat=3):
            shift = torch.tensor(corner, dtype=coord.dtype, device=coord.device) * radius
            # The nearest voxel in the direction of this corner (a tiny offset breaks ties).
            shifted = (coord + shift + 1e-6).clamp(-1 + 1e-6, 1 - 1e-6)
            vector = sample_grid(feat, shifted, "nearest", "border")
            centre = sample_grid(centres, shifted, "nearest", "border")
            relative = (coord - centre) * size
            inputs = torch.cat([vector, relative, cell * size], dim=-1)
            predictions.append(self.layers(inputs))
            volumes.append(relative.abs().prod(dim=-1, keepdim=True) + 1e-9)
        total = torch.stack(volumes).sum(dim=0)
        # Each neighbour is weighted by the volume of the sub-cell diagonally opposite to it.
        return sum(p * v for p, v in zip(predictions, reversed(volumes), strict=True)) / total

    def forward(
        self,
        feat: torch.Tensor,
        coord: torch.Tensor,
        cell: torch.Tensor | None = None,
        *,
        chunk_size: int | None = None,
    ) -> torch.Tensor:
        if cell is None:
            raise ValueError("LocalImplicitDecoder needs the cell size of the queried grid")
        if self.unfold:
            b, c, *spatial = feat.shape
            padded = F.pad(feat, (1, 1, 1, 1, 1, 1))
            patches = padded.unfold(2, 3, 1).unfold(3, 3, 1).unfold(4, 3, 1)
            feat = patches.permute(0, 1, 5, 6, 7, 2, 3, 4).reshape(b, c * 27, *spatial)
        centres = cell_centres(feat.shape[2:], flatten=False).to(feat)
        centres = centres.permute(3, 0, 1, 2)[None].expand(feat.shape[0], -1, -1, -1, -1)
        return _in_chunks(
            lambda c, s: self._decode(c, s, feat, centres), coord, cell, chunk_size=chunk_size
        )
