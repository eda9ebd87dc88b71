"""The Winograd convolution computes F.conv3d, and is used only where it applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tumsyn.models import winograd
from tumsyn.models.residual_encoder import ResidualEncoder3D
from tumsyn.models.winograd import (
    Conv3d3,
    reused_buffers,
    transform_kernel,
    winograd_applies,
    winograd_conv3d,
)


def _reference(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None):
    return F.conv3d(
        image.double(), weight.double(), None if bias is None else bias.double(), padding=1
    )


def _relative_error(output: torch.Tensor, expected: torch.Tensor) -> float:
    return float((output.double() - expected).abs().max() / expected.abs().max())


def test_one_dimensional_transform_is_exact() -> None:
    # F(4, 3): A^T [(G g) * (B^T d)] is the 4-output correlation of d (6 values) with g (3).
    b_t, g, a_t = winograd._B_T, winograd._G, winograd._A_T
    data, taps = torch.randn(6, dtype=torch.float64), torch.randn(3, dtype=torch.float64)
    expected = torch.stack([(data[i : i + 3] * taps).sum() for i in range(4)])
    assert torch.allclose(a_t @ ((g @ taps) * (b_t @ data)), expected, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 6),
    out_channels=st.integers(1, 5),
    depth=st.integers(1, 9),
    height=st.integers(1, 11),
    width=st.integers(1, 11),
    bias=st.booleans(),
    slab_bytes=st.sampled_from([1, 2**12, winograd.SLAB_BYTES]),
)
def test_equals_direct_convolution(
    batch, channels, out_channels, depth, height, width, bias, slab_bytes
) -> None:
    # Any size (tiles cut off at the edges), any slab depth (1 slice up to the whole image).
    generator = torch.Generator().manual_seed(depth * 100 + height * 10 + width)
    image = torch.randn(batch, channels, depth, height, width, generator=generator)
    weight = torch.randn(out_channels, channels, 3, 3, 3, generator=generator)
    offset = torch.randn(out_channels, generator=generator) if bias else None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(winograd, "SLAB_BYTES", slab_bytes)
        output = winograd_conv3d(image, weight, offset)
    assert output.shape == (batch, out_channels, depth, height, width)
    assert output.is_contiguous()
    assert _relative_error(output, _reference(image, weight, offset)) < 1e-5


def test_precision_at_paper_width() -> None:
    # 256 channels, as in the official encoder: within 3e-5 of the output's range (the direct
    # convolution: about 5e-6), independent of reusing the scratch tensors.
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 256, 6, 12, 10, generator=generator)
    conv = torch.nn.Conv3d(256, 256, 3, padding=1)
    expected = _reference(image, conv.weight.detach(), conv.bias.detach())
    with torch.no_grad():
        plain = winograd_conv3d(image, conv.weight, conv.bias)
        with reused_buffers():
            first = winograd_conv3d(image, conv.weight, conv.bias)
            second = winograd_conv3d(image, conv.weight, conv.bias)
    assert _relative_error(plain, expected) < 3e-5
    assert torch.equal(plain, first) and torch.equal(first, second)


def test_scratch_tensors_live_only_inside_the_block() -> None:
    image, weight = torch.randn(1, 2, 3, 4, 4), torch.randn(2, 2, 3, 3, 3)
    assert winograd._SCRATCH.buffers is None
    with reused_buffers():
        winograd_conv3d(image, weight)
        with reused_buffers():  # nested: the outer block's tensors are kept
            winograd_conv3d(image, weight)
        assert winograd._SCRATCH.buffers
    assert winograd._SCRATCH.buffers is None


def test_kernel_transform_layout() -> None:
    weight = torch.randn(5, 4, 3, 3, 3)
    kernel = transform_kernel(weight)
    assert kernel.shape == (36, 3, 5, 4)
    # G's first row is (1, 0, 0) (the point 0): frequency (0, 0) is the in-plane corner tap.
    assert torch.equal(winograd._G[0], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    assert torch.allclose(kernel[0], weight[:, :, :, 0, 0].permute(2, 0, 1))


def test_bad_shapes() -> None:
    with pytest.raises(ValueError, match="kernel"):
        winograd_conv3d(torch.zeros(1, 2, 4, 4, 4), torch.zeros(3, 2, 1, 1, 1))
    with pytest.raises(ValueError, match="kernel"):
        winograd_conv3d(torch.zeros(2, 4, 4, 4), torch.zeros(3, 2, 3, 3, 3))


def test_used_only_where_it_applies() -> None:
    wide = Conv3d3(winograd.MIN_CHANNELS, winograd.MIN_CHANNELS)
    image = torch.zeros(1, winograd.MIN_CHANNELS, 4, 4, 4)
    assert not winograd_applies(wide, image)  # gradients on: training keeps the direct path
    with torch.no_grad():
        assert winograd_applies(wide, image)
        assert not winograd_applies(wide, image.double())
        assert not winograd_applies(Conv3d3(16, 16), torch.zeros(1, 16, 4, 4, 4))
        strided = torch.nn.Conv3d(128, 128, 3, padding=1, stride=2)
        assert not winograd_applies(strided, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not winograd_applies(wide, image)
    with torch.inference_mode():
        assert winograd_applies(wide, image)


def test_conv3d3_is_a_drop_in_conv3d() -> None:
    torch.manual_seed(0)
    layer, plain = Conv3d3(128, 128), torch.nn.Conv3d(128, 128, 3, padding=1)
    assert layer.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(layer.state_dict())
    image = torch.randn(1, 128, 5, 6, 7)
    with torch.no_grad():
        fast, direct = layer(image), plain(image)
    assert not torch.equal(fast, direct)  # it took the Winograd path...
    assert _relative_error(fast, direct.double()) < 3e-5  # ...and computed the same
    trained = layer(image)  # with gradients: the direct convolution, exactly
    assert trained.requires_grad and torch.equal(trained.detach(), direct)


def test_residual_encoder_inference_matches_training_path() -> None:
    torch.manual_seed(0)
    encoder = ResidualEncoder3D(features=128, blocks=1, out_channels=8).eval()
    image = torch.rand(1, 1, 6, 9, 8)
    with torch.no_grad():
        fast = encoder(image)
    slow = encoder(image).detach()
    assert _relative_error(fast, slow.double()) < 1e-4
    assert winograd._SCRATCH.buffers is None
