"""The multi-level TGANv2 generator (reference.md §1; official ``MultiTGANCLSTMGenerator``).

    z ~ U(−1, 1)^z_dim → fc → reshape (N, C, t, t) → ConvLSTM (T steps, fc(z) at t = 0, zeros after)
      → fold frames into the batch (N·T, C, t, t) → 3 "build" up-blocks (``build_blocks``) → render level 1
      → [subsample → up-block → render level l] for l = 2..L

Training mode returns the list of level videos ``(N_l, 3, T_l, H_l, W_l)``; each render is a side branch
taken *before* the subsampling layer, and the next block consumes the subsampled abstract map. Eval mode
subsamples nothing and renders one video ``(N, 3, n_frames, H, W)`` at ``render_level``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .clstm import ConvLSTM
from .init import glorot_uniform_, lecun_normal_
from .subsample import LayerDraw, level_plan, subsample, subsample_batch, subsample_layer

__all__ = ["Generator", "UpBlock", "Renderer", "ConditionalBatchNorm2d", "make_batch_norm", "level1_side"]


class ConditionalBatchNorm2d(nn.Module):
    """Categorical conditional BN: shared statistics, per-class gamma (init 1) and beta (init 0)."""

    def __init__(self, channels: int, n_classes: int, eps: float) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=eps, momentum=0.1, affine=False)
        self.gamma = nn.Embedding(n_classes, channels)
        self.beta = nn.Embedding(n_classes, channels)
        nn.init.ones_(self.gamma.weight)
        nn.init.zeros_(self.beta.weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        out = self.bn(x)  # (B, C, H, W)
        return out * self.gamma(y)[:, :, None, None] + self.beta(y)[:, :, None, None]


def make_batch_norm(channels: int, n_classes: int, eps: float) -> nn.Module:
    """Chainer BatchNormalization (eps 2e-5, decay 0.9 = momentum 0.1), optionally class-conditional."""
    if n_classes > 0:
        return ConditionalBatchNorm2d(channels, n_classes, eps)
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.1)


def _norm(bn: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    return bn(x, y) if isinstance(bn, ConditionalBatchNorm2d) else bn(x)


def _per_frame(y: Tensor | None, frames: int) -> Tensor | None:
    """Labels ``(N,)`` → ``(N·T,)``, one per frame of the folded batch (sample-major, like the frames)."""
    return None if y is None else y[:, None].expand(-1, frames).reshape(-1)


# ×2 upsampling of the up-blocks: "nearest" is Chainer's unpooling_2d(k=2), the official; "bilinear"
# (half-pixel centres) does not carry the ConvLSTM grid's cells up as flat squares (see ModelConfig.upsample)
UPSAMPLE_MODES = ("nearest", "bilinear")


def _upsample(x: Tensor, mode: str) -> Tensor:
    """``(B, C, H, W)`` → ``(B, C, 2H, 2W)``. On the CPU through the channels-last kernel and back: the same
    bits forward and backward as the contiguous kernel (tests/test_model_generator.py), 1.15–2.2× faster
    with both conversions (torch 2.13; docs/benchmarks.md §4); the convolutions keep their layout."""
    if x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
        return F.interpolate(x, scale_factor=2, mode=mode).contiguous()
    return F.interpolate(x, scale_factor=2, mode=mode)


class UpBlock(nn.Module):
    """GenBlock with upsample=True: BN→ReLU→up×2→conv3×3→BN→ReLU→conv3×3, plus up×2→conv1×1 shortcut."""

    def __init__(
        self,
        in_channels: int,  # channels of the incoming abstract map
        out_channels: int,  # channels after the block (hidden = out)
        n_classes: int = 0,  # > 0: class-conditional BN
        bn_eps: float = 2e-5,  # Chainer's BN eps
        upsample: str = "nearest",  # one of UPSAMPLE_MODES
    ) -> None:
        super().__init__()
        if upsample not in UPSAMPLE_MODES:
            raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {upsample!r}")
        self.upsample = upsample
        self.bn1 = make_batch_norm(in_channels, n_classes, bn_eps)
        self.conv1 = glorot_uniform_(nn.Conv2d(in_channels, out_channels, 3, padding=1), math.sqrt(2))
        self.bn2 = make_batch_norm(out_channels, n_classes, bn_eps)
        self.conv2 = glorot_uniform_(nn.Conv2d(out_channels, out_channels, 3, padding=1), math.sqrt(2))
        self.shortcut = glorot_uniform_(nn.Conv2d(in_channels, out_channels, 1), 1.0)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """x: ``(B, C_in, H, W)`` with B = N·T → ``(B, C_out, 2H, 2W)``; no activation after the sum."""
        h = self.conv1(_upsample(F.relu(_norm(self.bn1, x, y)), self.upsample))
        h = self.conv2(F.relu(_norm(self.bn2, h, y)))
        return h + self.shortcut(_upsample(x, self.upsample))


class Renderer(nn.Module):
    """Rendering block g^R: BN → ReLU → conv3×3 → tanh (LeCunNormal init, zero bias)."""

    def __init__(self, in_channels: int, out_channels: int = 3, n_classes: int = 0, bn_eps: float = 2e-5):
        super().__init__()
        self.bn = make_batch_norm(in_channels, n_classes, bn_eps)
        self.conv = lecun_normal_(nn.Conv2d(in_channels, out_channels, 3, padding=1))

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        return torch.tanh(self.conv(F.relu(_norm(self.bn, h, y))))  # (B, 3, H, W)


def level1_side(t_size: int, build_blocks: int) -> int:
    """Frame side of level 1: the t×t ConvLSTM grid doubled by each build block (official: t_size·8)."""
    return t_size * 2**build_blocks


def block_channels(
    ch: int, clstm_ch: int, n_levels: int, min_block_ch: int = 0, build_blocks: int = 3
) -> list[tuple[int, int]]:
    """(in, out) channels of the up-blocks: ``build_blocks`` before level 1, then one per further level.

    With ch=32, clstm_ch=1024: 1024→512→256→128 | 128→64 | 64→32 | 32→32 (reference §1.5). Fewer build
    blocks keep the last ones (2: clstm_ch→ch·8→ch·4; 1: clstm_ch→ch·4, the PyTorch port's Moving-MNIST
    layout). The blocks after level 1 are at least ``min_block_ch`` wide (0: ch, the official floor).
    """
    widths = [clstm_ch, *[ch * 16, ch * 8, ch * 4][3 - build_blocks :]]
    for level in range(2, n_levels + 1):
        widths.append(max(ch * 4 >> (level - 1), min_block_ch or ch))
    return list(zip(widths[:-1], widths[1:]))


class Generator(nn.Module):
    def __init__(
        self,
        n_frames: int = 16,  # frames at level 1 in training; default length at inference
        z_dim: int = 256,  # latent size, z ~ U(−1, 1)
        t_size: int = 3,  # CLSTM grid size; level 1 is t_size·2^build_blocks px (official: t_size·8)
        build_blocks: int = 3,  # up-blocks between the ConvLSTM and level 1 (1..3; 3 official)
        ch: int = 32,  # base width of the up-blocks
        min_block_ch: int = 0,  # floor of the widths after level 1 (0: ch, official)
        clstm_ch: int = 1024,  # ConvLSTM channels
        n_layers: int = 1,  # stacked ConvLSTMs
        clstm_kernel: int = 3,  # ConvLSTM kernel (3 official; 1 suits a 1×1 grid, see ModelConfig)
        clstm_forget_bias: float = 0.0,  # initial ConvLSTM forget-gate bias (0 official, see ModelConfig)
        out_channels: int = 3,  # RGB
        n_classes: int = 0,  # > 0: class-conditional BN; forward then needs labels y
        frame_strides: list[int] = (2, 2, 2),  # frame stride of each subsampling layer
        batch_strides: list[int] = (1, 1, 1),  # batch stride of each subsampling layer
        crop_factors: list[int] = (1, 1, 1),  # spatial random crop of each layer (1 = off; paper §3.1)
        use_avg_pooling: bool = False,  # ablation: mean over frame groups instead of strided frames
        render_level: int = 4,  # level rendered in eval mode (1..L)
        bn_eps: float = 2e-5,  # Chainer's BN eps
        upsample: str = "nearest",  # the up-blocks' ×2 upsampling, one of UPSAMPLE_MODES (nearest official)
    ) -> None:
        super().__init__()
        if not 1 <= build_blocks <= 3:
            raise ValueError(f"build_blocks must be in 1..3, got {build_blocks}")
        self.n_frames, self.z_dim, self.t_size, self.build_blocks = n_frames, z_dim, t_size, build_blocks
        self.clstm_ch, self.n_classes = clstm_ch, n_classes
        self.frame_strides, self.batch_strides = list(frame_strides), list(batch_strides)
        self.crop_factors, self.use_avg_pooling = list(crop_factors), use_avg_pooling
        self.n_levels = len(self.frame_strides) + 1
        self.render_level = render_level
        self.fc = lecun_normal_(nn.Linear(z_dim, t_size * t_size * clstm_ch))
        self.clstm = ConvLSTM(clstm_ch, n_layers, clstm_kernel, clstm_forget_bias)
        channels = block_channels(ch, clstm_ch, self.n_levels, min_block_ch, build_blocks)
        self.blocks = nn.ModuleList(UpBlock(i, o, n_classes, bn_eps, upsample) for i, o in channels)
        renderer_inputs = [o for _, o in channels[build_blocks - 1 :]]  # level 1's, then one per next level
        self.renderers = nn.ModuleList(Renderer(o, out_channels, n_classes, bn_eps) for o in renderer_inputs)

    @property
    def level1_size(self) -> int:
        return level1_side(self.t_size, self.build_blocks)

    def make_z(self, n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
        """z ~ U(−1, 1)^(n × z_dim), float32, drawn from ``generator`` on its own device (CPU by default;
        a generator on the model's device needs no host-to-device copy), then moved to ``device``."""
        where = generator.device if generator is not None else "cpu"
        z = torch.rand(n, self.z_dim, generator=generator, device=where) * 2 - 1
        return z.to(device or self.fc.weight.device)

    def make_labels(self, n: int, class_label: int | None = None, device=None) -> Tensor | None:
        """Labels for ``n`` samples: ``class_label`` for all, or a class-balanced mix 0, 1, …, K−1, 0, …
        (each class ⌊n/K⌋ or ⌈n/K⌉ times); None for an unconditional generator."""
        if self.n_classes == 0:
            if class_label is not None:
                raise ValueError("class labels need a class-conditional generator (n_classes > 0)")
            return None
        if class_label is not None and not 0 <= class_label < self.n_classes:
            raise ValueError(f"class label must be in 0..{self.n_classes - 1}, got {class_label}")
        y = torch.arange(n) % self.n_classes if class_label is None else torch.full((n,), class_label)
        return y.to(device or self.fc.weight.device)  # (n,) int64

    def forward(
        self,
        z: Tensor,
        y: Tensor | None = None,
        n_frames: int | None = None,
        render_level: int | None = None,
        rng: torch.Generator | None = None,
        draws: list[LayerDraw] | None = None,
    ) -> list[Tensor] | Tensor:
        """Training: list of ``(N_l, 3, T_l, H_l, W_l)``. Eval: ``(N, 3, n_frames, H, W)`` at one level.

        z: ``(N, z_dim)``; y: ``(N,)`` class labels when ``n_classes > 0``. In training, the frame offsets
        and crops of the subsampling layers come from ``draws`` (one shared ``LayerDraw`` per layer, e.g.
        ``ModelConfig.layer_draws``: no torch RNG, no host sync, one compiled graph), or else are drawn
        from ``rng``, a CPU ``torch.Generator`` (the older path).
        """
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (N, {self.z_dim}), got {tuple(z.shape)}")
        if (y is None) != (self.n_classes == 0):
            raise ValueError("labels y are required exactly when n_classes > 0")
        n = z.shape[0]
        n_frames = n_frames or self.n_frames
        if self.training:
            # validates the frame count: every layer must keep the same frames for any offset
            level_plan(
                n, n_frames, self.level1_size, self.frame_strides, self.batch_strides, self.crop_factors
            )
            if draws is not None and len(draws) != self.n_levels - 1:
                raise ValueError(f"draws must hold {self.n_levels - 1} LayerDraws, got {len(draws)}")
        h0 = self.fc(z).view(n, self.clstm_ch, self.t_size, self.t_size)  # channel-major reshape
        h = self.clstm(h0, n_frames)  # (N, T, C, t, t)
        t = n_frames
        h = h.reshape(n * t, *h.shape[2:])  # (N·T, C, t, t), sample-major then time
        y_frames = _per_frame(y, t)  # (N·T,) or None
        for block in self.blocks[: self.build_blocks]:
            h = block(h, y_frames)

        if not self.training:
            level = render_level or self.render_level
            if not 1 <= level <= self.n_levels:
                raise ValueError(f"render_level must be in 1..{self.n_levels}, got {level}")
            for block in self.blocks[self.build_blocks : self.build_blocks + level - 1]:
                h = block(h, y_frames)
            return self._to_video(self.renderers[level - 1](h, y_frames), n)

        levels = [self._to_video(self.renderers[0](h, y_frames), n)]
        for k in range(self.n_levels - 1):
            h5 = h.view(n, t, *h.shape[1:])  # (N, T, C, H, W)
            layer = (self.frame_strides[k], self.batch_strides[k], self.crop_factors[k], self.use_avg_pooling)
            if draws is not None:
                h5 = subsample_layer(h5, draws[k], *layer, time_dim=1)
            else:
                h5 = subsample(h5, *layer, per_sample=False, time_dim=1, generator=rng)
            y = None if y is None else subsample_batch(y, self.batch_strides[k])
            if self.frame_strides[k] > 1 and not self.use_avg_pooling:
                # the kept frames as a map of their own, as the reshape below would copy them anyway (it
                # saves one copy only when N' = T' = 1); keeps `bench cost`'s saved-bytes accounting stable
                h5 = h5.clone(memory_format=torch.contiguous_format)
            n, t = h5.shape[:2]
            h = h5.reshape(n * t, *h5.shape[2:])  # (N'·T', C, H', W')
            y_frames = _per_frame(y, t)
            h = self.blocks[self.build_blocks + k](h, y_frames)
            levels.append(self._to_video(self.renderers[k + 1](h, y_frames), n))
        return levels

    @staticmethod
    def _to_video(frames: Tensor, n: int) -> Tensor:
        """``(N·T, C, H, W)`` → ``(N, C, T, H, W)``."""
        bt, c, hgt, wdt = frames.shape
        return frames.view(n, bt // n, c, hgt, wdt).permute(0, 2, 1, 3, 4)
