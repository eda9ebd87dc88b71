"""Stage-1 image encoders: one 3D MRI volume -> one vector in the joint text-image space.

Two towers, both ``forward(image (N, C, D, H, W)) -> (N, embed_dim)`` on cubic inputs:

- :class:`ModifiedResNet3D`, the tower of the released TUMSyn checkpoint: CLIP's ModifiedResNet
  (Radford et al., ICML 2021) in 3D. Its attribute names are the official ones, so that its
  ``state_dict`` equals the official ``visual.*`` keys without the prefix.
- :class:`ViT3D`, the tower the TUMSyn paper describes (a 3D ViT-B/16 on 96^3 volumes), built on
  MONAI's :class:`monai.networks.nets.ViT` plus a projection to ``embed_dim``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModifiedResNet3D", "ViT3D", "check_resnet_args", "check_vit_args", "resnet_grid"]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def resnet_grid(size: int) -> int:
    """Side of the feature grid :class:`ModifiedResNet3D` makes from an input side ``size``.

    The stem convolution halves with rounding up (kernel 3, stride 2, padding 1); the stem
    average pool and the stride-2 stages 2, 3 and 4 each halve rounding down. For every input the
    official code accepts this equals ``size // 32`` (120 -> 60 -> 30 -> 15 -> 7 -> 3).
    """
    side = (size - 1) // 2 + 1
    for _ in range(4):
        side //= 2
    return side


def check_resnet_args(
    *, layers: Sequence[int], width: int, heads: int, input_size: int, embed_dim: int
) -> None:
    """Raise ``ValueError`` quoting the value when the ResNet settings cannot work together."""
    if isinstance(layers, str | bytes) or len(layers) != 4:
        raise ValueError(f"layers must hold 4 block counts, got {layers!r}")
    _check_positive(**{f"layers[{i}]": n for i, n in enumerate(layers)})
    _check_positive(width=width, heads=heads, input_size=input_size, embed_dim=embed_dim)
    if width % 2:
        raise ValueError(f"width {width} must be even (the stem's first convolutions use width/2)")
    if (32 * width) % heads:
        raise ValueError(
            f"the attention pool width 32 * width = {32 * width} is not divisible by heads {heads}"
        )
    if resnet_grid(input_size) < 1:
        raise ValueError(
            f"input_size {input_size} is too small: the tower downsamples by 32 (at least 31)"
        )


def check_vit_args(
    *,
    input_size: int,
    patch_size: int,
    width: int,
    layers: int,
    heads: int,
    mlp_dim: int,
    embed_dim: int,
    dropout_rate: float = 0.0,
) -> None:
    """Raise ``ValueError`` quoting the value when the ViT settings cannot work together."""
    _check_positive(
        input_size=input_size,
        patch_size=patch_size,
        width=width,
        layers=layers,
        heads=heads,
        mlp_dim=mlp_dim,
        embed_dim=embed_dim,
    )
    if input_size % patch_size:
        raise ValueError(f"input_size {input_size} is not divisible by patch_size {patch_size}")
    if width % heads:
        raise ValueError(f"width {width} is not divisible by heads {heads}")
    if not 0.0 <= dropout_rate <= 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1], got {dropout_rate}")


def _check_image(image: torch.Tensor, in_channels: int) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 5:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a 5D tensor (N, C, D, H, W), got {shape}")
    if image.shape[1] != in_channels:
        raise ValueError(f"image must have {in_channels} channel(s), got {image.shape[1]}")


class Bottleneck3D(nn.Module):
    """CLIP's anti-aliased bottleneck in 3D: 1x1x1, 3x3x3, [average pool], 1x1x1 (x4 channels).

    A stride > 1 is an average pool after the 3x3x3 convolution (and before the 1x1x1 shortcut
    convolution), never a strided convolution.
    """

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv3d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.avgpool = nn.AvgPool3d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv3d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if stride > 1 or in_planes != out_planes:
            # Keys "0" and "1" as in the official checkpoint; the pool ("-1") has no parameters.
            self.downsample = nn.Sequential(
                OrderedDict(
                    [
                        ("-1", nn.AvgPool3d(stride) if stride > 1 else nn.Identity()),
                        ("0", nn.Conv3d(in_planes, out_planes, 1, bias=False)),
                        ("1", nn.BatchNorm3d(out_planes)),
                    ]
                )
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_planes, d, h, w) -> (N, 4 * planes, d / stride, h / stride, w / stride)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class AttentionPool3d(nn.Module):
    """CLIP's attention pooling in 3D: the mean token queries all tokens (plus itself), then c_proj.

    Args:
        grid: side of the input feature grid (``grid ** 3`` tokens, plus the mean token).
        width: input channels.
        heads: attention heads (``width`` divisible by it).
        embed_dim: output dimension.
    """

    def __init__(self, grid: int, width: int, heads: int, embed_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(grid**3 + 1, width) / width**0.5)
        self.k_proj = nn.Linear(width, width)
        self.q_proj = nn.Linear(width, width)
        self.v_proj = nn.Linear(width, width)
        self.c_proj = nn.Linear(width, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, width, grid, grid, grid) -> (N, embed_dim)."""
        batch, width = x.shape[:2]
        tokens = x.flatten(2).transpose(1, 2)  # (N, T, width)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        tokens = tokens + self.positional_embedding.to(tokens.dtype)
        head_dim = width // self.heads
        # Only the mean token's output is kept, so only its query is computed; the result equals
        # full self-attention read at position 0.
        q = self.q_proj(tokens[:, :1]).view(batch, 1, self.heads, head_dim).transpose(1, 2)
        k = self.k_proj(tokens).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        v = self.v_proj(tokens).view(batch, -1, self.heads, head_dim).transpose(1, 2)
        pooled = F.scaled_dot_product_attention(q, k, v)  # (N, heads, 1, head_dim)
        return self.c_proj(pooled.transpose(1, 2).reshape(batch, width))


class ModifiedResNet3D(nn.Module):
    """The official TUMSyn stage-1 image tower: CLIP's ModifiedResNet in 3D.

    A 3-convolution stem (the first with stride 2) and a 2x average pool, four bottleneck stages of
    widths ``width * (1, 2, 4, 8)`` (x4 expansion; stages 2-4 halve the grid by anti-aliasing
    average pools), then 3D attention pooling of the ``32 * width`` channels to ``embed_dim``. The
    released checkpoint uses ``layers=(3, 4, 6, 3)``, ``width=256``, ``input_size=120`` and
    ``embed_dim=768`` (about 0.95B parameters).

    Args:
        layers: bottleneck blocks per stage (4 numbers).
        embed_dim: output dimension.
        input_size: side of the cubic input; fixes the attention pool's positional embedding
            (``resnet_grid(input_size) ** 3 + 1`` tokens, i.e. ``(input_size // 32) ** 3 + 1``).
        width: stem width (even).
        heads: attention-pool heads; default ``32 * width // 64`` (64 channels a head), as CLIP.
        in_channels: image channels (1 for MRI).

    Example:
        >>> tower = ModifiedResNet3D((1, 1, 1, 1), embed_dim=32, input_size=32, width=8)
        >>> tower(torch.zeros(2, 1, 32, 32, 32)).shape
        torch.Size([2, 32])
    """

    def __init__(
        self,
        layers: Sequence[int],
        *,
        embed_dim: int,
        input_size: int,
        width: int = 64,
        heads: int | None = None,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        heads = 32 * width // 64 if heads is None and isinstance(width, int) else heads
        check_resnet_args(
            layers=layers, width=width, heads=heads, input_size=input_size, embed_dim=embed_dim
        )
        _check_positive(in_channels=in_channels)
        self.embed_dim = embed_dim
        self.input_size = input_size
        self.in_channels = in_channels
        half = width // 2
        self.conv1 = nn.Conv3d(in_channels, half, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(half)
        self.conv2 = nn.Conv3d(half, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(half)
        self.conv3 = nn.Conv3d(half, width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm3d(width)
        self.avgpool = nn.AvgPool3d(2)
        self.relu = nn.ReLU(inplace=True)
        planes_in = width
        stages = []
        for index, blocks in enumerate(layers):
            planes = width * 2**index
            stride = 1 if index == 0 else 2
            stage = [Bottleneck3D(planes_in, planes, stride)]
            planes_in = planes * Bottleneck3D.expansion
            stage += [Bottleneck3D(planes_in, planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool3d(resnet_grid(input_size), 32 * width, heads, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As CLIP: attention-pool projections ~ N(0, 1/width), last BN of each block zero."""
        std = self.attnpool.c_proj.in_features**-0.5
        for linear in (
            self.attnpool.q_proj,
            self.attnpool.k_proj,
            self.attnpool.v_proj,
            self.attnpool.c_proj,
        ):
            nn.init.normal_(linear.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image features.

        Args:
            image: (N, in_channels, D, H, W); every side must give the feature grid of
                ``input_size`` (``resnet_grid(side) == resnet_grid(input_size)``).

        Returns:
            (N, embed_dim) unnormalised features.
        """
        _check_image(image, self.in_channels)
        grid = self.attnpool.grid
        if any(resnet_grid(side) != grid for side in image.shape[2:]):
            raise ValueError(
                f"image of spatial shape {tuple(image.shape[2:])} does not fit this tower, built "
                f"for input_size {self.input_size} (a {grid}^3 feature grid)"
            )
        x = image.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.attnpool(x)


class ViT3D(nn.Module):
    """The paper's stage-1 image tower: a 3D ViT (MONAI), mean token projected to ``embed_dim``.

    Dosovitskiy et al., "An Image is Worth 16x16 Words", ICLR 2021; TUMSyn uses ViT-B/16 (width 768,
    12 layers, 12 heads, MLP 3072) on 96^3 volumes. MONAI's ViT embeds non-overlapping
    ``patch_size^3`` patches with learned positions, runs pre-norm blocks and a final LayerNorm.

    Pooling: the mean of the final tokens, not a class token. MONAI's ViT only makes a class token
    together with a classification head that would go unused; with 216 tokens from 96^3 a mean
    token summarises the whole volume from the first step (a class token must learn to gather it),
    which is what MAE and most 3D medical ViT encoders do; and it keeps ``self.vit`` a plain
    backbone whose patch tokens a UNETR-style decoder could reuse. The projection is a bias-free
    linear map, as CLIP's ``proj``.

    Args:
        input_size: side of the cubic input (learned positions fix it).
        patch_size: side of a cubic patch; divides ``input_size``.
        width: token width (MONAI's ``hidden_size``).
        layers: transformer blocks.
        heads: attention heads; divide ``width``.
        mlp_dim: hidden width of each block's MLP.
        embed_dim: output dimension.
        in_channels: image channels (1 for MRI).
        dropout_rate: dropout in MONAI's blocks.
        qkv_bias: biases in the query/key/value projection (True in ViT-B).

    Example:
        >>> tower = ViT3D(input_size=16, patch_size=8, width=32, layers=1, heads=2, mlp_dim=64,
        ...               embed_dim=24)
        >>> tower(torch.zeros(2, 1, 16, 16, 16)).shape
        torch.Size([2, 24])
    """

    def __init__(
        self,
        *,
        input_size: int,
        patch_size: int,
        width: int,
        layers: int,
        heads: int,
        mlp_dim: int,
        embed_dim: int,
        in_channels: int = 1,
        dropout_rate: float = 0.0,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        check_vit_args(
            input_size=input_size,
            patch_size=patch_size,
            width=width,
            layers=layers,
            heads=heads,
            mlp_dim=mlp_dim,
            embed_dim=embed_dim,
            dropout_rate=dropout_rate,
        )
        _check_positive(in_channels=in_channels)
        from monai.networks.nets import ViT  # imported here: importing MONAI takes a second

        self.embed_dim = embed_dim
        self.input_size = input_size
        self.in_channels = in_channels
        self.vit = ViT(
            in_channels=in_channels,
            img_size=input_size,
            patch_size=patch_size,
            hidden_size=width,
            mlp_dim=mlp_dim,
            num_layers=layers,
            num_heads=heads,
            proj_type="conv",
            pos_embed_type="learnable",
            classification=False,
            dropout_rate=dropout_rate,
            spatial_dims=3,
            qkv_bias=qkv_bias,
        )
        self.proj = nn.Linear(width, embed_dim, bias=False)
        nn.init.normal_(self.proj.weight, std=width**-0.5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Image features.

        Args:
            image: (N, in_channels, input_size, input_size, input_size).

        Returns:
            (N, embed_dim) unnormalised features.
        """
        _check_image(image, self.in_channels)
        if tuple(image.shape[2:]) != (self.input_size,) * 3:
            raise ValueError(
                f"image must be {self.input_size}^3 voxels for this tower, "
                f"got spatial shape {tuple(image.shape[2:])}"
            )
        tokens, _ = self.vit(image.to(self.proj.weight.dtype))  # (N, T, width), final norm applied
        return self.proj(tokens.mean(dim=1))
