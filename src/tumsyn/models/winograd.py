"""Faster 3x3x3 convolutions for CPU inference: Winograd F(4x4, 3x3) in-plane, direct in depth.

Why: on the CPU, paper-size TUMSyn models spend most of their time in the encoder's fifty
256-channel 3x3x3 convolutions, and oneDNN's direct convolution already runs them near the
processor's peak (about 200 GFLOP/s on 2 cores here). Only fewer multiplications can make them
faster. oneDNN offers Winograd for 2D convolutions only, and not on every CPU, so it is written
here with PyTorch's matrix products.

The scheme (Lavin and Gray, "Fast algorithms for convolutional neural networks", CVPR 2016):
each depth slice is cut into 6x6 tiles (stride 4) that are transformed with ``B^T d B``; the
kernel's 3x3 in-plane taps with ``G g G^T``; then the 36 frequency components become 36
independent channel-mixing matrix products, summed over the three depth taps, and ``A^T m A``
turns each back into a 4x4 output tile. That is 3 * 36 / 16 = 6.75 multiplications per output and
input channel instead of 27 (4x fewer), in large, efficient products; the transforms themselves
are cheap, memory-bound passes. A Winograd transform along depth too would save more, but F(4, 3)
in three dimensions loses an order of magnitude more precision than in two, too much for results
that must match the official code.

Interpolation points 0, 1, -1, 1/2, -2 (and infinity) instead of the usual 0, +-1, +-2 halve
the rounding error (Barabasz et al., "Error analysis and improving the accuracy of Winograd
convolution for deep neural networks", ACM TOMS 2020); in float32 the result stays within 3e-5
of the output's range of the exact convolution at 256 channels (tests/models/test_winograd.py).

Used by :class:`Conv3d3` only where it helps and is exact enough: float32 on the CPU, no
gradient, no autocast, stride 1, padding 1, at least :data:`MIN_CHANNELS` channels. Training and
GPUs keep the direct convolution.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

import torch
from torch import nn

__all__ = ["MIN_CHANNELS", "Conv3d3", "reused_buffers", "winograd_applies", "winograd_conv3d"]

TILE = 4  # output tile edge (the m of F(m, r))
_SPAN = TILE + 2  # input tile edge
_POINTS = (Fraction(0), Fraction(1), Fraction(-1), Fraction(1, 2), Fraction(-2))
MIN_CHANNELS = 128  # at 64 channels and fewer the transforms cost as much as the products save
SLAB_BYTES = 128 * 2**20  # scratch per tensor: bounds memory for large patches


def _poly_times_root(coefficients: list[Fraction], root: Fraction) -> list[Fraction]:
    """(sum c_k x^k) * (x - root), coefficients lowest power first."""
    shifted = [Fraction(0), *coefficients]
    return [s - root * c for s, c in zip(shifted, [*coefficients, Fraction(0)], strict=True)]


def _matrices() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``B^T`` (6x6), ``G`` (6x3), ``A^T`` (4x6) of F(4, 3) from the points (Toom-Cook with the
    point at infinity), exact in rationals, then as float64."""
    points = _POINTS
    a_t = [[p**k for p in points] + [Fraction(int(k == TILE - 1))] for k in range(TILE)]
    g, b_t = [], []
    for i, p in enumerate(points):
        others = [q for j, q in enumerate(points) if j != i]
        poly, scale = [Fraction(1)], Fraction(1)
        for q in others:
            poly = _poly_times_root(poly, q)
            scale *= p - q
        g.append([p**k / scale for k in range(3)])
        b_t.append(poly + [Fraction(0)] * (_SPAN - len(poly)))
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    full = [Fraction(1)]
    for q in points:
        full = _poly_times_root(full, q)
    b_t.append(full)
    return tuple(  # type: ignore[return-value]
        torch.tensor([[float(v) for v in row] for row in m], dtype=torch.float64)
        for m in (b_t, g, a_t)
    )


_B_T, _G, _A_T = _matrices()
# The 2D transforms as single matrices on flattened tiles (Kronecker products of the 1D ones).
_INPUT_2D = torch.kron(_B_T, _B_T).float()  # (36, 36)
_KERNEL_2D = torch.kron(_G, _G).float()  # (36, 9)
_OUTPUT_2D = torch.kron(_A_T, _A_T).float()  # (16, 36)


def transform_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``(O, C, 3, 3, 3)`` -> ``(36, 3, O, C)``: per frequency and depth tap, a channel matrix.

    Recomputed on every call (a small matrix product, cheap next to the convolution): caching the
    result for every layer would cost four times the weights' memory.
    """
    out_channels, in_channels = weight.shape[:2]
    flat = weight.permute(3, 4, 0, 1, 2).reshape(9, -1)  # (kh*kw, O*C*kd)
    kernel = _KERNEL_2D.to(weight.device) @ flat
    return kernel.view(_SPAN**2, out_channels, in_channels, 3).permute(0, 3, 1, 2).contiguous()


class _Scratch(threading.local):
    buffers: dict[str, torch.Tensor] | None = None


_SCRATCH = _Scratch()


@contextmanager
def reused_buffers() -> Iterator[None]:
    """Within this block, Winograd convolutions reuse their scratch tensors.

    Why: a fresh tensor's pages are faulted in (zeroed by the kernel) on first touch, a sizeable
    share of a convolution's time; a network's layers have the same shapes, so one set of scratch
    tensors serves them all. Freed when the block ends.
    """
    outer = _SCRATCH.buffers
    if outer is None:
        _SCRATCH.buffers = {}
    try:
        yield
    finally:
        if outer is None:
            _SCRATCH.buffers = None


def _scratch(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised float32 CPU tensor of ``shape``, reused inside :func:`reused_buffers`."""
    buffers = _SCRATCH.buffers
    if buffers is None:
        return torch.empty(shape)
    numel = math.prod(shape)
    buffer = buffers.get(name)
    if buffer is None or buffer.numel() < numel:
        buffer = buffers[name] = torch.empty(numel)
    return buffer[:numel].view(shape)


def _slab_depth(channels: int, tiles: int, depth: int) -> int:
    """How many output slices to transform at once, so each scratch tensor stays near
    :data:`SLAB_BYTES` (the two halo slices of a slab are transformed twice; products are not)."""
    per_slice = _SPAN**2 * channels * tiles * 4
    return max(1, min(depth, SLAB_BYTES // per_slice - 2))


def _convolve_one(
    image: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None, output: torch.Tensor
) -> None:
    """One ``(C, D, H, W)`` image -> ``output`` ``(O, D, H', W')``, H' and W' rounded up to TILE."""
    channels, depth, height, width = image.shape
    out_channels = kernel.shape[2]
    rows, cols = output.shape[2] // TILE, output.shape[3] // TILE
    tiles = rows * cols
    tiled_output = output.view(out_channels, depth, rows, TILE, cols, TILE)
    slab = _slab_depth(max(channels, out_channels), tiles, depth)
    for start in range(0, depth, slab):
        count = min(slab, depth - start)
        # Input slices start-1 .. start+count, zero outside the image and around it.
        padded = _scratch("padded", (channels, count + 2, rows * TILE + 2, cols * TILE + 2))
        padded.zero_()
        first, last = max(start - 1, 0), min(start + count + 1, depth)
        offset = first - (start - 1)
        padded[:, offset : offset + last - first, 1 : height + 1, 1 : width + 1] = image[
            :, first:last
        ]
        patches = padded.unfold(2, _SPAN, TILE).unfold(3, _SPAN, TILE)  # C, n+2, rows, cols, 6, 6
        flat = _scratch("flat", (_SPAN, _SPAN, channels, count + 2, rows, cols))
        flat.copy_(patches.permute(4, 5, 0, 1, 2, 3))
        spectrum = _scratch("spectrum", (_SPAN**2, channels, count + 2, tiles))
        torch.mm(_INPUT_2D, flat.view(_SPAN**2, -1), out=spectrum.view(_SPAN**2, -1))
        product = _scratch("product", (_SPAN**2, out_channels, count * tiles))
        for tap in range(3):  # the depth taps: shifted slices of the same spectrum, no copies
            shifted = spectrum[:, :, tap : tap + count].flatten(2)
            if tap == 0:
                torch.bmm(kernel[:, 0], shifted, out=product)
            else:
                product.baddbmm_(kernel[:, tap], shifted)
        blocks = _scratch("blocks", (TILE, TILE, out_channels, count, rows, cols))
        torch.mm(_OUTPUT_2D, product.view(_SPAN**2, -1), out=blocks.view(TILE**2, -1))
        interleaved = blocks.permute(2, 3, 4, 0, 5, 1)
        target = tiled_output[:, start : start + count]
        if bias is None:
            target.copy_(interleaved)
        else:  # the bias rides on the pass that interleaves the tiles
            torch.add(interleaved, bias.view(-1, 1, 1, 1, 1, 1), out=target)


def winograd_conv3d(
    image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``F.conv3d(image, weight, bias, padding=1)`` for ``3x3x3`` kernels, by Winograd F(4x4, 3x3).

    Example:
        >>> x, w = torch.randn(2, 8, 5, 6, 7), torch.randn(4, 8, 3, 3, 3)
        >>> direct = torch.nn.functional.conv3d(x, w, padding=1)
        >>> torch.allclose(winograd_conv3d(x, w), direct, atol=1e-4)
        True
    """
    if image.ndim != 5 or weight.shape[2:] != (3, 3, 3) or image.shape[1] != weight.shape[1]:
        raise ValueError(
            f"need a (B, C, D, H, W) image and a (O, C, 3, 3, 3) kernel, got "
            f"{tuple(image.shape)} and {tuple(weight.shape)}"
        )
    batch, _, depth, height, width = image.shape
    kernel = transform_kernel(weight)
    rounded = (-(-height // TILE) * TILE, -(-width // TILE) * TILE)
    output = torch.empty(batch, weight.shape[0], depth, *rounded)
    for sample, result in zip(image, output, strict=True):
        _convolve_one(sample, kernel, bias, result)
    if rounded != (height, width):
        output = output[..., :height, :width].contiguous()
    return output


def winograd_applies(conv: nn.Conv3d, image: torch.Tensor) -> bool:
    """Whether :func:`winograd_conv3d` may replace ``conv`` on ``image`` (see the module doc)."""
    return (
        image.device.type == "cpu"
        and image.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and conv.kernel_size == (3, 3, 3)
        and conv.stride == (1, 1, 1)
        and conv.padding == (1, 1, 1)
        and conv.dilation == (1, 1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and min(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
    )


class Conv3d3(nn.Conv3d):
    """A ``3x3x3``, padding-1 :class:`~torch.nn.Conv3d` that uses Winograd where it applies.

    Same parameters and state-dict names as ``nn.Conv3d``, so checkpoints are unaffected.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if winograd_applies(self, image):
            return winograd_conv3d(image, self.weight, self.bias)
        return super().forward(image)
