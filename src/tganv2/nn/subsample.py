"""Subsampling layers S^G and S^D (paper §3, Eq. 8-9; reference.md §1.6, §3.3).

This module is the one place where the subsampling rule lives. The generator (fakes), the real-data
path (reals) and the cost benchmarks all call these functions.

Eq. 8-9: h'[m, τ] = h[m·s_n, τ·s_t + b_t] with b_t ~ U{0, s_t − 1}, i.e. in slicing notation
``h[::s_n, b_t::s_t]``. Official behaviour (the default):
  * fakes: one frame offset per call, shared by every sample in the batch (``numpy.random.randint(s)``);
  * reals: one frame offset per sample and per level.
Variants: average pooling over groups of ``frame_stride`` frames (``use_avg_pooling``) and the paper's
spatial random crop (§3.1: "crop function where rectangle size is fixed but the position is random").

Randomness is drawn *before* the forward (``draw_layers``, from a ``numpy.random.Generator``) and passed
in as one ``LayerDraw`` per layer: shared offsets are Python ints, per-sample ones CPU LongTensors, so the
forward needs no host sync. A passed ``torch.Generator`` (CPU) still works in place of draws. Every
function is built from indexing and means, so gradients flow to the kept entries.

Layouts: a video batch is ``(N, C, T, H, W)``; the generator's folded abstract map is ``(N·T, C, H, W)``
and is unfolded to ``(N, T, C, H, W)`` before these functions are applied (``time_dim=1``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LayerDraw",
    "draw_layers",
    "draw_frame_offsets",
    "subsample_frames",
    "avgpool_frames",
    "subsample_batch",
    "draw_crop_origins",
    "crop_spatial",
    "subsample",
    "n_kept",
]


def n_kept(length: int, stride: int, offset: int = 0) -> int:
    """Number of entries that ``x[offset::stride]`` keeps from an axis of ``length``."""
    return max(0, -(-(length - offset) // stride))


@dataclass(frozen=True)
class LayerDraw:
    """The random choices of one subsampling layer, drawn before the forward."""

    frame_offset: int | Tensor  # int: shared by the batch (fakes); LongTensor (N_l,): per sample (reals)
    crop_origin: tuple[int, int] | Tensor | None = None  # (y0, x0) shared, (N_l, 2) per sample; None: no crop


def draw_layers(
    frame_strides: list[int],
    batch_strides: list[int],
    crop_factors: list[int],
    sizes: list[int],  # spatial size of the map entering each layer
    batch: int,  # batch entering the first layer
    rng: np.random.Generator,
    per_sample: bool = False,
    use_avg_pooling: bool = False,
) -> list[LayerDraw]:
    """One ``LayerDraw`` per layer, drawn in layer order (offset, then crop) after each batch stride.

    Per-sample draws are CPU LongTensors built from numpy (the caller moves them to the device).
    """
    draws = []
    n = batch
    for frame_stride, batch_stride, crop_factor, size in zip(
        frame_strides, batch_strides, crop_factors, sizes
    ):
        n = n_kept(n, batch_stride)
        offset: int | Tensor = 0
        if frame_stride > 1 and not use_avg_pooling:
            if per_sample:
                offset = torch.from_numpy(rng.integers(0, frame_stride, n, dtype=np.int64))
            else:
                offset = int(rng.integers(0, frame_stride))
        origin: tuple[int, int] | Tensor | None = None
        if crop_factor > 1:
            high = size - size // crop_factor + 1
            if per_sample:
                origin = torch.from_numpy(rng.integers(0, high, (n, 2), dtype=np.int64))
            else:
                y0, x0 = rng.integers(0, high, 2)
                origin = (int(y0), int(x0))
        draws.append(LayerDraw(offset, origin))
    return draws


def draw_frame_offsets(
    frame_stride: int, n: int | None = None, generator: torch.Generator | None = None
) -> int | Tensor:
    """b_t ~ U{0, frame_stride − 1}: one int (shared, ``n=None``) or a LongTensor of ``n`` (per sample)."""
    size = (1,) if n is None else (n,)
    offsets = torch.randint(0, frame_stride, size, generator=generator, device="cpu")
    return int(offsets.item()) if n is None else offsets


def subsample_frames(x: Tensor, frame_stride: int, offset: int | Tensor = 0, time_dim: int = 2) -> Tensor:
    """Keep frames ``offset, offset + s, ...`` along ``time_dim`` (Eq. 8-9 with s_n = 1).

    ``offset`` is an int shared by the batch, or a LongTensor ``(N,)`` with one offset per sample along
    dim 0. With per-sample offsets every sample keeps ``T // s`` frames (the official real path: T=16 and
    s=2 give 8 frames from either offset); with a shared offset it keeps ``len(range(offset, T, s))``.
    """
    if frame_stride == 1:
        return x
    length = x.shape[time_dim]
    if isinstance(offset, int):
        index = torch.arange(offset, length, frame_stride, device=x.device)
        return x.index_select(time_dim, index)
    n_out = length // frame_stride
    # (N, n_out): per-sample frame indices
    index = offset.to(x.device).view(-1, 1) + frame_stride * torch.arange(n_out, device=x.device)
    shape = [1] * x.dim()
    shape[0], shape[time_dim] = x.shape[0], n_out
    index = index.view(shape).expand(*[n_out if d == time_dim else s for d, s in enumerate(x.shape)])
    return torch.gather(x, time_dim, index)


def avgpool_frames(x: Tensor, frame_stride: int, time_dim: int = 2) -> Tensor:
    """Mean over consecutive groups of ``frame_stride`` frames (T // s groups; the ablation variant)."""
    if frame_stride == 1:
        return x
    length = x.shape[time_dim]
    groups = length // frame_stride
    x = x.narrow(time_dim, 0, groups * frame_stride)
    shape = list(x.shape)
    shape[time_dim : time_dim + 1] = [groups, frame_stride]
    return x.reshape(shape).mean(dim=time_dim + 1)


def subsample_batch(x: Tensor, batch_stride: int) -> Tensor:
    """Adaptive batch reduction: keep samples ``0, s_n, 2·s_n, ...`` along dim 0."""
    return x if batch_stride == 1 else x[::batch_stride]


def draw_crop_origins(
    size: int, crop: int, n: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Top-left corners ``(y0, x0)`` for a ``crop``-sized square inside a ``size``-sized one.

    Returns ``(2,)`` (shared by the batch) or ``(n, 2)`` (per sample); each entry is in [0, size − crop].
    """
    shape = (2,) if n is None else (n, 2)
    return torch.randint(0, size - crop + 1, shape, generator=generator, device="cpu")


def crop_spatial(x: Tensor, crop: int, origins: tuple[int, int] | Tensor) -> Tensor:
    """Square spatial crop of the last two axes; ``origins`` is ``(y0, x0)``, ``(2,)`` or ``(N, 2)``."""
    if isinstance(origins, tuple):
        y0, x0 = origins
        return x[..., y0 : y0 + crop, x0 : x0 + crop]
    if origins.dim() == 1:
        y0, x0 = (int(v) for v in origins)
        return x[..., y0 : y0 + crop, x0 : x0 + crop]
    rows = origins[:, :1].to(x.device) + torch.arange(crop, device=x.device)  # (N, crop)
    cols = origins[:, 1:].to(x.device) + torch.arange(crop, device=x.device)  # (N, crop)
    mid = [1] * (x.dim() - 3)
    rows = rows.view(x.shape[0], *mid, crop, 1).expand(*x.shape[:-2], crop, x.shape[-1])
    x = torch.gather(x, x.dim() - 2, rows)
    cols = cols.view(x.shape[0], *mid, 1, crop).expand(*x.shape[:-1], crop)
    return torch.gather(x, x.dim() - 1, cols)


def subsample(
    x: Tensor,
    frame_stride: int = 2,
    batch_stride: int = 1,
    crop_factor: int = 1,
    use_avg_pooling: bool = False,
    per_sample: bool = False,
    time_dim: int = 2,
    generator: torch.Generator | None = None,
    draw: LayerDraw | None = None,
) -> Tensor:
    """One subsampling layer: batch stride, then frames (strided or pooled), then an optional crop.

    ``per_sample=False`` is the generator's rule (one offset, one crop position for the batch);
    ``per_sample=True`` is the real-data rule (independent per sample). Offsets are drawn after the batch
    stride, from ``generator``, unless ``draw`` (from ``draw_layers``) gives them. ``crop_factor`` c > 1 keeps
    a random ``H/c × W/c`` window.
    """
    x = subsample_batch(x, batch_stride)
    if use_avg_pooling:
        x = avgpool_frames(x, frame_stride, time_dim)
    elif frame_stride > 1:
        if draw is not None:
            offset = draw.frame_offset
        else:
            offset = draw_frame_offsets(frame_stride, x.shape[0] if per_sample else None, generator)
        x = subsample_frames(x, frame_stride, offset, time_dim)
    if crop_factor > 1:
        size = x.shape[-1]
        crop = size // crop_factor
        if draw is not None:
            origins = draw.crop_origin
        else:
            origins = draw_crop_origins(size, crop, x.shape[0] if per_sample else None, generator)
        x = crop_spatial(x, crop, origins)
    return x


def box_pool(x: Tensor, factor: int) -> Tensor:
    """Box-mean pooling by ``factor`` over the last two axes of ``(N, C, T, H, W)`` (real levels, §3.3)."""
    if factor == 1:
        return x
    n, c, t, h, w = x.shape
    return F.avg_pool2d(x.reshape(n, c * t, h, w), factor).reshape(n, c, t, h // factor, w // factor)
