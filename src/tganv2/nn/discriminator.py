"""The multi-level 3D-ResNet discriminator (reference.md §2; official ``MultiResNetVideoDiscriminator``).

One independent sub-discriminator per level; level scores ``(N_l, 1)`` are concatenated along the batch
axis into ``(ΣN_l, 1)`` with no per-level weights. No normalisation of any kind.
``mbstd_group > 0`` adds StyleGAN's minibatch standard deviation before the last block (not official).

The downsample rule is copied exactly (§2.1): an average pool applied to each of T, H, W with kernel 2 if
that axis is longer than 1 (else 1), padding 1 on both sides if the length is odd (else 0), stride = kernel,
and padded zeros counted in the average. So length 3 → 2, and a length-1 axis becomes length 3.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .init import glorot_uniform_

__all__ = [
    "downsample",
    "OptimizedDisBlock",
    "DisBlock",
    "MinibatchStd",
    "VideoDiscriminator",
    "MultiLevelDiscriminator",
]


def downsample(x: Tensor) -> Tensor:
    """The official per-axis average pool of ``(N, C, T, H, W)`` (see module docstring)."""
    kernel = [2 if size > 1 else 1 for size in x.shape[2:]]
    pad = [1 if size % 2 else 0 for size in x.shape[2:]]
    if any(pad):
        # F.pad takes (W_left, W_right, H_left, H_right, T_left, T_right)
        x = F.pad(x, (pad[2], pad[2], pad[1], pad[1], pad[0], pad[0]))
    return F.avg_pool3d(x, kernel, stride=kernel)


def _conv3(in_ch: int, out_ch: int) -> nn.Conv3d:
    return glorot_uniform_(nn.Conv3d(in_ch, out_ch, 3, padding=1), math.sqrt(2))


def _conv1(in_ch: int, out_ch: int) -> nn.Conv3d:
    return glorot_uniform_(nn.Conv3d(in_ch, out_ch, 1), 1.0)


class OptimizedDisBlock(nn.Module):
    """First block: conv→ReLU→conv→AvgPool(1,2,2), plus AvgPool(1,2,2)→conv1³; no leading activation."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3(in_channels, out_channels)
        self.conv2 = _conv3(out_channels, out_channels)
        self.shortcut = _conv1(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool3d(_onednn_safe_conv(self.conv2, F.relu(_onednn_safe_conv(self.conv1, x))), (1, 2, 2))
        return h + _onednn_safe_conv(self.shortcut, F.avg_pool3d(x, (1, 2, 2)))


def _onednn_safe_conv(conv: nn.Conv3d, x: Tensor) -> Tensor:
    """``conv(x)``, in fp32 under CPU bf16 autocast where torch 2.13's oneDNN bf16 Conv3d is wrong.

    Two oneDNN v3.12 bugs (torch 2.13 CPU); CUDA keeps bf16 (``tests/test_bf16.py -m gpu`` checks it):

    * RGB input (3 channels), forward, AMX CPUs (Xeon Sapphire Rapids): garbage (1e30s, inf, NaN) at T = 1.
      Measured: 3×3×3 conv, 3 → 16 channels, input (4, 3, 1, 64, 64); up to 6e32 off.
    * Time axis of length 2 with the 3×3×3, padding-1 kernel, *weight gradient*, AVX-512 CPUs: oneDNN's
      ``jit_bf16:avx512_core_bf16`` backward_weights (measured on AMD EPYC) and ``jit_bf16:avx512_core``
      (CPUs without bf16 instructions); AVX2's gemm path is right. The taps of the first two kernel frames
      are wrong: ~100 % off, or 1e18-1e37 and NaN that change from run to run (uninitialised memory).
      Forward and input gradient are right. Every level of D has blocks with 2-frame inputs (a 1-frame axis
      is padded to 3 and pooled to 2), so one D update made NaN weights (small-64) or gave Adam 1e27
      gradients (demo-64).
    The whole op runs in fp32 (forward, backward and R1's double backward): an fp32 weight gradient alone
    would need a hand-written autograd Function with its own double backward for R1.
    """
    broken = x.shape[1] == 3 or (x.shape[2] == 2 and conv.kernel_size[0] == 3 and conv.padding[0] == 1)
    if broken and x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return conv(x.float())
    return conv(x)


class DisBlock(nn.Module):
    """Pre-activation block: ReLU→conv(in→in)→ReLU→conv(in→out)→down, plus conv1³→down."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3(in_channels, in_channels)
        self.conv2 = _conv3(in_channels, out_channels)
        self.shortcut = _conv1(in_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = _onednn_safe_conv(self.conv2, F.relu(_onednn_safe_conv(self.conv1, F.relu(x))))
        return downsample(h) + downsample(self.shortcut(x))


class MinibatchStd(nn.Module):
    """StyleGAN's minibatch standard deviation as one extra channel (Karras et al. 2018, §3).

    The batch splits into contiguous groups of ``gcd(N, group_size)`` videos. Within each group, the
    standard deviation of every feature (over the group's videos) is averaged over (C, T, H, W) into one
    number, broadcast as a constant channel to the group's videos. A generator that draws the same thing
    for every z then shows D a 0 there, which real batches never have: a push towards variety.
    ``(N, C, T, H, W)`` → ``(N, C + 1, T, H, W)``. Contiguous groups keep reals and fakes apart as long as
    each is passed on its own (``train.d_joint_pass`` is refused with it).
    """

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        n, _, t, h, w = x.shape
        g = math.gcd(n, self.group_size)
        stat_dtype = torch.promote_types(x.dtype, torch.float32)  # bf16 → fp32 for the variance
        grouped = x.to(stat_dtype).reshape(n // g, g, -1)  # (groups, g, C·T·H·W)
        std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=1)  # (groups,)
        feature = std.to(x.dtype).repeat_interleave(g).reshape(n, 1, 1, 1, 1).expand(n, 1, t, h, w)
        return torch.cat([x, feature], dim=1)


class VideoDiscriminator(nn.Module):
    """One level: OptimizedDisBlock + 4 DisBlocks (ch·1…16), ReLU, sum over T·H·W, Linear → 1."""

    def __init__(
        self,
        in_channels: int = 3,  # RGB
        ch: int = 64,  # width of the first block; doubles per block up to 16·ch
        n_classes: int = 0,  # > 0: projection term <embed(y), h> (not in the official model)
        mbstd_group: int = 0,  # > 0: MinibatchStd before the last block (not in the official model)
    ) -> None:
        super().__init__()
        widths = [ch, ch * 2, ch * 4, ch * 8, ch * 16]
        extra = [0, 0, 0, 1 if mbstd_group > 0 else 0]  # the last DisBlock's input gets the std channel
        self.blocks = nn.ModuleList([OptimizedDisBlock(in_channels, widths[0])])
        self.blocks.extend(DisBlock(i + e, o) for i, o, e in zip(widths[:-1], widths[1:], extra))
        self.mbstd = MinibatchStd(mbstd_group) if mbstd_group > 0 else None
        self.linear = glorot_uniform_(nn.Linear(widths[-1], 1), 1.0)
        self.embed = nn.Embedding(n_classes, widths[-1]) if n_classes > 0 else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)

    def block_outputs(self, x: Tensor) -> Iterator[Tensor]:
        """Each block's output in turn, ``(N, C_k, T_k, H_k, W_k)``, from ``x`` ``(N, C, T, H, W)``."""
        h = x
        for k, block in enumerate(self.blocks):
            if self.mbstd is not None and k == len(self.blocks) - 1:
                h = self.mbstd(h)  # (N, 8·ch + 1, T_k, H_k, W_k)
            h = block(h)
            yield h

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x: ``(N, C, T, H, W)`` → scores ``(N, 1)``."""
        *_, h = self.block_outputs(x)  # (N, 16·ch, T', H', W')
        h = F.relu(h).sum(dim=(2, 3, 4))  # (N, 16·ch): ReLU then *sum* pooling
        out = self.linear(h)
        if self.embed is not None and y is not None:
            out = out + (self.embed(y) * h).sum(dim=1, keepdim=True)
        return out


class MultiLevelDiscriminator(nn.Module):
    def __init__(
        self,
        n_levels: int = 4,  # one sub-discriminator per generator level
        in_channels: int = 3,  # RGB
        ch: int = 64,  # first-block width of every level
        n_classes: int = 0,  # > 0: projection discriminator
        mbstd_group: int = 0,  # > 0: minibatch standard deviation in every level (MinibatchStd)
    ) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            VideoDiscriminator(in_channels, ch, n_classes, mbstd_group) for _ in range(n_levels)
        )

    def forward(self, videos: list[Tensor], labels: list[Tensor] | None = None) -> Tensor:
        """videos: one ``(N_l, C, T_l, H_l, W_l)`` per level → ``(ΣN_l, 1)``, levels in order."""
        if len(videos) != len(self.levels):
            raise ValueError(f"expected {len(self.levels)} level videos, got {len(videos)}")
        labels = labels or [None] * len(videos)
        return torch.cat([d(x, y) for d, x, y in zip(self.levels, videos, labels)], dim=0)
