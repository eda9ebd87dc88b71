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
import math
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
        ensemble_tolerance: a neighbour whose share of the ensemble is below this at every point
            of a chunk is not evaluated (the output moves by less than this fraction of the
            predictions' spread). Queries on the voxel centres of the feature grid (synthesis at
            the input's own resolution) then cost one MLP evaluation instead of eight.

    ``forward(feat, coord (B, Q, 3), cell (B, Q, 3)) -> (B, Q, out_channels)``.

    The MLP's first layer is linear in its input ``[feature, relative coordinate, cell]``, so its
    feature part is applied once per *voxel* of the grid (a 1x1x1 convolution, or 3x3x3 with
    ``unfold``) instead of once per query and neighbour: 8 or more times less work for that
    layer, and the per-neighbour lookup becomes an index into the projected grid. The result is
    the same function as the plain MLP on the concatenated input (same parameters, same keys).
    A projected grid larger than ``projection_budget`` bytes (wide first layers on big patches:
    3072 x 64^3 floats are 3.2 GB) is not made; the features are then looked up and projected per
    query, as LIIF does.
    """

    projection_budget = 2**30

    def __init__(
        self,
        *,
        in_channels: int,
        hidden: Sequence[int] = (256, 256, 256),
        out_channels: int = 1,
        unfold: bool = False,
        ensemble_tolerance: float = 1e-5,
    ) -> None:
        super().__init__()
        self.unfold = unfold
        self.in_channels = in_channels
        features = in_channels * (27 if unfold else 1)
        self.layers = MLP(features + 6, out_channels, hidden).layers
        self.ensemble_tolerance = ensemble_tolerance

    def _feature_table(self, feat: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """One row per voxel, ``(B * D * H * W, channels)``: the first layer's feature term (and
        bias) when that fits the budget (then True), else the features themselves."""
        first = self.layers[0]
        weight = first.weight[:, :-6]
        size = feat.shape[0] * feat[0, 0].numel() * weight.shape[0] * feat.element_size()
        if not self.unfold and size > self.projection_budget:
            return feat.movedim(1, -1).reshape(-1, feat.shape[1]), False
        if self.unfold:
            # Unfolded channels are ordered (channel, dz, dy, dx): a 3x3x3 kernel with zero padding.
            kernel = weight.reshape(weight.shape[0], self.in_channels, 3, 3, 3)
            projected = F.conv3d(feat, kernel, first.bias, padding=1)
        else:
            projected = F.conv3d(feat, weight[:, :, None, None, None], first.bias)
        return projected.movedim(1, -1).reshape(-1, weight.shape[0]), True

    @staticmethod
    def _neighbours(coord: torch.Tensor, shape: tuple[int, ...]):
        """The 8 neighbours of each point: (flat voxel row, relative coordinate, sub-cell volume).

        Along each axis a point has a lower and an upper neighbour: the voxels nearest to the
        point shifted by -/+ half a voxel (a tiny offset breaks ties), clamped to the grid as
        border padding would. The 8 corners combine them.
        """
        size = torch.tensor(shape, dtype=coord.dtype, device=coord.device)
        strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=coord.device)
        position = (coord + 1) * size / 2  # voxel i spans [i, i + 1)
        sides = []
        for half in (-0.5, 0.5):
            index = torch.minimum((position + half + 5e-7 * size).floor().clamp_min(0), size - 1)
            # (coord - centre of the voxel) in units of half a voxel, as in LIIF.
            sides.append((index.long() * strides, 2 * (position - index - 0.5)))
        offsets = torch.arange(coord.shape[0], device=coord.device)[:, None] * math.prod(shape)
        for a, b, c in itertools.product((0, 1), repeat=3):
            rows = sides[a][0][..., 0] + sides[b][0][..., 1] + sides[c][0][..., 2] + offsets
            relative = torch.stack(
                [sides[a][1][..., 0], sides[b][1][..., 1], sides[c][1][..., 2]], dim=-1
            )
            yield rows, relative, relative.abs().prod(dim=-1, keepdim=True) + 1e-9

    def _decode(self, coord, cell, table, projected, shape):
        first = self.layers[0]
        relative_weight, cell_weight = first.weight[:, -6:-3], first.weight[:, -3:]
        size = torch.tensor(shape, dtype=cell.dtype, device=cell.device)
        cell_term = (cell * size) @ cell_weight.T

        def predict(rows, relative, cell_term):
            rows = table[rows]
            first_term = rows if projected else F.linear(rows, first.weight[:, :-6], first.bias)
            return self.layers[1:](first_term + relative @ relative_weight.T + cell_term)

        neighbours = list(self._neighbours(coord, shape))
        # Each neighbour is weighted by the volume of the sub-cell diagonally opposite to it.
        weights = [volume for _, _, volume in reversed(neighbours)]
        total = torch.stack(weights).sum(dim=0)
        output = coord.new_zeros(*coord.shape[:2], self.layers[-1].out_features)
        evaluated = torch.zeros_like(total)
        for (rows, relative, _), weight in zip(neighbours, weights, strict=True):
            needed = weight >= self.ensemble_tolerance * total
            # (On the meta device, where FLOPs are counted, every neighbour is evaluated.)
            if coord.device.type == "meta" or bool(needed.all()):
                output = output + predict(rows, relative, cell_term) * weight
                evaluated = evaluated + weight
                continue
            # Only the points where this neighbour matters: on voxel centres, one of eight.
            where = needed.reshape(-1).nonzero().squeeze(1)
            values = predict(
                rows.reshape(-1)[where],
                relative.reshape(-1, 3)[where],
                cell_term.reshape(-1, cell_term.shape[-1])[where],
            )
            weight = weight * needed
            output = (
                output.reshape(-1, output.shape[-1])
                .index_add(0, where, values * weight.reshape(-1, 1)[where])
                .reshape(output.shape)
            )
            evaluated = evaluated + weight
        return output / evaluated

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
        table, projected = self._feature_table(feat)
        shape = tuple(feat.shape[2:])
        return _in_chunks(
            lambda c, s: self._decode(c, s, table, projected, shape),
            coord,
            cell,
            chunk_size=chunk_size,
        )
