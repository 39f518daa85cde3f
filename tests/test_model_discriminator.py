"""The multi-level 3D-ResNet discriminator against reference §2.1-2.2 (shapes, counts, quirks, init)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tganv2.nn.discriminator import (
    DisBlock,
    MinibatchStd,
    MultiLevelDiscriminator,
    OptimizedDisBlock,
    VideoDiscriminator,
    downsample,
)

# reference §2.1: per level, the (C, T, H, W) after each of the 5 blocks (UCF101 192 px, mid_ch 64)
UCF101_BLOCK_SHAPES = [
    [(64, 16, 12, 12), (128, 8, 6, 6), (256, 4, 3, 3), (512, 2, 2, 2), (1024, 1, 1, 1)],
    [(64, 8, 24, 24), (128, 4, 12, 12), (256, 2, 6, 6), (512, 1, 3, 3), (1024, 3, 2, 2)],
    [(64, 4, 48, 48), (128, 2, 24, 24), (256, 1, 12, 12), (512, 3, 6, 6), (1024, 2, 3, 3)],
    [(64, 2, 96, 96), (128, 1, 48, 48), (256, 3, 24, 24), (512, 2, 12, 12), (1024, 1, 6, 6)],
]
UCF101_LEVEL_INPUTS = [(16, 24, 24), (8, 48, 48), (4, 96, 96), (2, 192, 192)]


# --- downsample -------------------------------------------------------------------------------------


def _time_profile(values: list[float]) -> torch.Tensor:
    """A (1, 1, T, 2, 2) video constant in space, so the H/W pooling leaves the values unchanged."""
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1, 1, 1).expand(1, 1, -1, 2, 2).contiguous()


def test_downsample_odd_length_3_uses_windows_minus1_0_and_1_2_counting_zeros():
    out = downsample(_time_profile([2.0, 4.0, 8.0]))
    assert out.shape == (1, 1, 2, 1, 1)
    assert out.view(-1).tolist() == [(0.0 + 2.0) / 2, (4.0 + 8.0) / 2]


def test_downsample_length_1_becomes_3_with_zeros_on_both_sides():
    out = downsample(_time_profile([5.0]))
    assert out.shape == (1, 1, 3, 1, 1)
    assert out.view(-1).tolist() == [0.0, 5.0, 0.0]


def test_downsample_odd_length_5_and_spatial_axes():
    out = downsample(_time_profile([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert out.view(-1).tolist() == [0.5, 2.5, 4.5]
    # odd spatial size 3 → 2 with the same windows; all three axes are pooled independently
    x = torch.arange(9, dtype=torch.float64).view(1, 1, 1, 3, 3)
    out = downsample(x)
    assert out.shape == (1, 1, 3, 2, 2)
    # rows [-1, 0] and [1, 2], columns likewise, zeros counted: divide by 4
    expected = torch.tensor([[0 + 0, 0 + 1 + 2], [0 + 3 + 0 + 6, 4 + 5 + 7 + 8]], dtype=torch.float64) / 4
    torch.testing.assert_close(out[0, 0, 1], expected)
    assert out[0, 0, 0].abs().sum() == 0 and out[0, 0, 2].abs().sum() == 0


def test_downsample_even_lengths_are_a_plain_average_pool():
    x = torch.randn(2, 3, 4, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(downsample(x), F.avg_pool3d(x, 2))


def _reference_downsample_axis(x: torch.Tensor, dim: int) -> torch.Tensor:
    """The Chainer rule on one axis, written with explicit windows."""
    length = x.shape[dim]
    kernel = 2 if length > 1 else 1
    pad = 1 if length % 2 else 0
    padded_len = length + 2 * pad
    outs = []
    for start in range(0, padded_len - kernel + 1, kernel):
        acc = torch.zeros_like(x.select(dim, 0))
        for k in range(kernel):
            i = start + k - pad  # index into the unpadded axis; outside = a counted zero
            if 0 <= i < length:
                acc = acc + x.select(dim, i)
        outs.append(acc / kernel)
    return torch.stack(outs, dim=dim)


@settings(max_examples=40, deadline=None)
@given(t=st.integers(1, 7), h=st.integers(1, 7), w=st.integers(1, 7))
def test_downsample_matches_per_axis_reference(t, h, w):
    x = torch.randn(2, 2, t, h, w, dtype=torch.float64)
    expected = x
    for dim in (2, 3, 4):
        expected = _reference_downsample_axis(expected, dim)
    torch.testing.assert_close(downsample(x), expected, rtol=1e-12, atol=1e-12)


# --- blocks against hand-written references ------------------------------------------------------------


def test_optimized_block_matches_hand_written():
    block = OptimizedDisBlock(3, 4).double()
    x = torch.randn(2, 3, 3, 6, 6, dtype=torch.float64)
    h = F.conv3d(x, block.conv1.weight, block.conv1.bias, padding=1).relu()  # no activation before conv1
    h = F.conv3d(h, block.conv2.weight, block.conv2.bias, padding=1)
    h = F.avg_pool3d(h, (1, 2, 2))
    sc = F.conv3d(F.avg_pool3d(x, (1, 2, 2)), block.shortcut.weight, block.shortcut.bias)
    torch.testing.assert_close(block(x), h + sc)


def test_dis_block_matches_hand_written_with_hidden_equal_to_in_channels():
    block = DisBlock(3, 5).double()
    assert block.conv1.weight.shape == (3, 3, 3, 3, 3)  # in → in
    assert block.conv2.weight.shape == (5, 3, 3, 3, 3)  # in → out
    x = torch.randn(2, 3, 3, 4, 1, dtype=torch.float64)
    h = F.conv3d(x.relu(), block.conv1.weight, block.conv1.bias, padding=1).relu()
    h = F.conv3d(h, block.conv2.weight, block.conv2.bias, padding=1)
    sc = F.conv3d(x, block.shortcut.weight, block.shortcut.bias)
    expected = 0
    for v in (h, sc):
        for dim in (2, 3, 4):
            v = _reference_downsample_axis(v, dim)
        expected = expected + v
    out = block(x)
    assert out.shape == (2, 5, 2, 2, 3)
    torch.testing.assert_close(out, expected)


def test_relu_then_sum_pooling_then_linear():
    disc = VideoDiscriminator(3, ch=2).double()
    with torch.no_grad():
        disc.linear.bias.fill_(0.25)
    x = torch.randn(3, 3, 4, 8, 8, dtype=torch.float64)
    h = x
    for block in disc.blocks:
        h = block(h)
    assert h.shape[2:] != (1, 1, 1)  # more than one position, so sum and mean differ
    features = h.relu().sum(dim=(2, 3, 4))
    expected = features @ disc.linear.weight.T + 0.25
    torch.testing.assert_close(disc(x), expected)
    mean_pooled = h.relu().mean(dim=(2, 3, 4)) @ disc.linear.weight.T + 0.25
    assert not torch.allclose(disc(x), mean_pooled)


def test_multi_level_concatenates_level_scores_in_order():
    disc = MultiLevelDiscriminator(n_levels=3, ch=2)
    videos = [torch.randn(4, 3, 4, 4, 4), torch.randn(2, 3, 2, 8, 8), torch.randn(1, 3, 1, 16, 16)]
    out = disc(videos)
    assert out.shape == (7, 1)
    expected = torch.cat([d(v) for d, v in zip(disc.levels, videos)])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError, match="expected 3 level videos"):
        disc(videos[:2])


def test_levels_are_independent_modules():
    disc = MultiLevelDiscriminator(n_levels=4, ch=2)
    weights = [d.blocks[0].conv1.weight for d in disc.levels]
    assert len({w.data_ptr() for w in weights}) == 4
    assert not torch.equal(weights[0], weights[1])


def test_no_normalisation_layers():
    disc = MultiLevelDiscriminator(n_levels=4, ch=2)
    norm_types = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)
    assert not any(isinstance(m, norm_types) for m in disc.modules())
    assert not any("weight_orig" in name for name, _ in disc.named_parameters())  # no spectral norm


# --- shapes and counts ---------------------------------------------------------------------------------


@pytest.mark.parametrize("level", range(4))
def test_block_shapes_follow_the_reference_table(level):
    """The §2.1 table (incl. the length-3 quirk) on real tensors, with widths scaled from 64 to 2."""
    disc = VideoDiscriminator(3, ch=2)
    h = torch.randn(1, 3, *UCF101_LEVEL_INPUTS[level])
    for block, (c, t, hh, ww) in zip(disc.blocks, UCF101_BLOCK_SHAPES[level]):
        h = block(h)
        assert tuple(h.shape) == (1, c // 32, t, hh, ww)
    assert disc(torch.randn(2, 3, *UCF101_LEVEL_INPUTS[level])).shape == (2, 1)


def test_full_size_parameter_counts():
    with torch.device("meta"):
        level = VideoDiscriminator(3, ch=64)
        multi = MultiLevelDiscriminator(n_levels=4, in_channels=3, ch=64)
    assert sum(p.numel() for p in level.parameters()) == 29_019_265
    assert sum(p.numel() for p in multi.parameters()) == 116_077_060
    assert level.linear.weight.shape == (1, 1024)


# --- initialisation (reference §8 item 10) -------------------------------------------------------------


def _glorot_bound(weight: torch.Tensor, gain: float) -> float:
    receptive = weight[0, 0].numel()
    fan_in, fan_out = weight.shape[1] * receptive, weight.shape[0] * receptive
    return gain * math.sqrt(6.0 / (fan_in + fan_out))


def test_initialisation_glorot_and_zero_biases():
    disc = VideoDiscriminator(3, ch=16)
    for name, module in disc.named_modules():
        if isinstance(module, (torch.nn.Conv3d, torch.nn.Linear)):
            assert torch.count_nonzero(module.bias) == 0, name
            gain = 1.0 if (name.endswith("shortcut") or name == "linear") else math.sqrt(2.0)
            bound = _glorot_bound(module.weight, gain)
            max_abs = module.weight.abs().max().item()
            assert max_abs <= bound * (1 + 1e-6), name
            # the max of n uniforms misses the bound by more than a fraction q with probability (1 − q)^n
            if module.weight.numel() >= 1000:
                assert max_abs >= 0.99 * bound, name
            elif module.weight.numel() >= 200:  # the final linear (256 weights)
                assert max_abs >= 0.95 * bound, name
    assert disc.linear.weight.abs().max() <= math.sqrt(6 / (256 + 1))  # Glorot(1), fan_in 256, fan_out 1
    # a large √2 layer: its std is bound/√3
    weight = disc.blocks[3].conv2.weight
    assert weight.std().item() == pytest.approx(_glorot_bound(weight, math.sqrt(2)) / math.sqrt(3), rel=0.02)


# --- projection (class-conditional D, not in the official model) ------------------------------------------


def test_projection_labels_change_scores():
    disc = VideoDiscriminator(3, ch=2, n_classes=3)
    x = torch.randn(2, 3, 2, 4, 4)
    a = disc(x, torch.tensor([0, 0]))
    b = disc(x, torch.tensor([1, 2]))
    assert a.shape == (2, 1) and not torch.allclose(a, b)


# --- minibatch standard deviation (StyleGAN's, not in the official model) ----------------------------


def test_minibatch_std_feature_is_the_mean_population_std_of_each_contiguous_group():
    # 4 videos of 2 values each, groups of 2: {v0, v1} and {v2, v3}
    values = [[0.0, 2.0], [2.0, 6.0], [1.0, 1.0], [1.0, 5.0]]
    x = torch.tensor(values, dtype=torch.float64).view(4, 2, 1, 1, 1)
    out = MinibatchStd(2)(x)
    assert out.shape == (4, 3, 1, 1, 1) and torch.equal(out[:, :2], x)
    # group 1: per-feature stds |0−2|/2 = 1 and |2−6|/2 = 2; group 2: 0 and 2; each √(var + 1e-8)
    first = ((1 + 1e-8) ** 0.5 + (4 + 1e-8) ** 0.5) / 2
    second = (1e-8**0.5 + (4 + 1e-8) ** 0.5) / 2
    expected = [first, first, second, second]
    assert out[:, 2].reshape(-1).tolist() == pytest.approx(expected, abs=1e-12)


def test_minibatch_std_groups_do_not_mix_and_fall_back_to_the_gcd():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 2, 4, 4)
    y = x.clone()
    y[3:] = torch.randn(3, 3, 2, 4, 4)  # another second half
    layer = MinibatchStd(4)  # gcd(6, 4) = 2: groups {0, 1}, {2, 3}, {4, 5}
    a, b = layer(x)[:, -1], layer(y)[:, -1]
    assert torch.equal(a[:2], b[:2]) and not torch.equal(a[2:4], b[2:4])
    # constant over (T, H, W) within a video, equal within a group
    assert torch.equal(a, a[:, :1, :1, :1].expand_as(a)) and a[0, 0, 0, 0] == a[1, 0, 0, 0]
    # identical videos in a group: the std is √1e-8
    same = MinibatchStd(2)(x[:1].expand(2, -1, -1, -1, -1))
    assert same[:, -1].max().item() == pytest.approx(1e-4, rel=1e-6)


def test_minibatch_std_adds_one_input_channel_to_the_last_block_of_each_level():
    # last DisBlock (8·ch → 16·ch): conv1 27·(8ch+1)² + (8ch+1); conv2 and the shortcut one more input each
    ch = 4
    plain = sum(p.numel() for p in MultiLevelDiscriminator(2, ch=ch).parameters())
    with_std = sum(p.numel() for p in MultiLevelDiscriminator(2, ch=ch, mbstd_group=4).parameters())
    c_in, c_out = 8 * ch, 16 * ch
    per_level = (27 * ((c_in + 1) ** 2 - c_in**2) + 1) + 27 * c_out + c_out
    assert with_std - plain == 2 * per_level
    disc = VideoDiscriminator(3, ch=ch, mbstd_group=2)
    x = torch.randn(4, 3, 4, 16, 16)
    assert disc(x).shape == (4, 1)
    # a batch of four copies of one video scores differently from that video among others: D sees the batch
    copies = disc(x[:1].expand(4, -1, -1, -1, -1))
    assert not torch.allclose(copies[0], disc(x)[0])


def test_bf16_autocast_on_cpu_matches_fp32_for_single_frame_levels():
    """A length-1 time axis (the last level of 8-frame videos) with RGB input under CPU bf16 autocast.

    torch 2.13's oneDNN bf16 Conv3d on AMX CPUs returns garbage for odd input channels at T = 1; the RGB
    convs run in fp32 on the CPU (``_onednn_safe_conv``). On other CPUs this holds anyway.
    """
    torch.manual_seed(0)
    disc = VideoDiscriminator(ch=16)
    x = torch.rand(4, 3, 1, 64, 64) * 2 - 1
    expected = disc(x)
    for _ in range(3):
        junk = torch.full((1 << 20,), 1e30)  # leave large values in freed memory
        del junk
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = disc(x).float()
        torch.testing.assert_close(got, expected, rtol=0.05, atol=0.02)
