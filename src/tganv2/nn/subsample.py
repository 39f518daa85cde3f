"""Subsampling layers S^G and S^D (paper §3, Eq. 8-9; reference.md §1.6, §3.3) and the level arithmetic.

This module is the one place where the subsampling rule lives. The generator (fakes), the real-data
path (reals), the config's level shapes, the summary and the cost benchmarks all call it.

Eq. 8-9: h'[m, τ] = h[m·s_n, τ·s_t + b_t] with b_t ~ U{0, s_t − 1}, i.e. in slicing notation
``h[::s_n, b_t::s_t]``. Official behaviour (the default):
  * fakes: one frame offset per call, shared by every sample in the batch (``numpy.random.randint(s)``);
  * reals: one frame offset per sample and per level.
Variants: average pooling over groups of ``frame_stride`` frames (``use_avg_pooling``) and the paper's
spatial random crop (§3.1: "crop function where rectangle size is fixed but the position is random").

Level arithmetic (``level_plan``): a layer with batch stride s_n keeps ⌈N / s_n⌉ samples, one with frame
stride s_t keeps T / s_t frames, and a crop factor c keeps a ⌊S / c⌋ window. ``h[b::s_t]`` keeps T / s_t
frames for *every* offset b only when s_t divides T, so the frame count must be a multiple of the product
of the frame strides (``frame_count_that_works``); otherwise fakes (one offset) and reals (offsets per
sample) would get levels of different lengths depending on chance.

Randomness is drawn before the forward (``draw_layers``, from a ``numpy.random.Generator``) and passed in
as one ``LayerDraw`` per layer: shared draws are Python ints, so a layer is plain slicing with no index
tensor, no torch RNG and no host sync (the generator compiles as one graph). The older path that draws
from a ``torch.Generator`` inside ``subsample`` is kept for callers that have not moved over. Every function
is built from views, gathers and means, so gradients flow to the kept entries.

Layouts: a video batch is ``(N, C, T, H, W)``; the generator's folded abstract map is ``(N·T, C, H, W)``
and is unfolded to ``(N, T, C, H, W)`` before these functions are applied (``time_dim=1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LayerDraw",
    "LevelShape",
    "kept_batch",
    "kept_frames",
    "crop_side",
    "batch_reductions",
    "frame_count_that_works",
    "level_plan",
    "draw_layers",
    "subsample_layer",
    "subsample_frames",
    "avgpool_frames",
    "subsample_batch",
    "crop_spatial",
    "box_pool",
    "draw_frame_offsets",
    "draw_crop_origins",
    "subsample",
]


# --- level arithmetic ----------------------------------------------------------------------------------


def kept_batch(n: int, batch_stride: int) -> int:
    """Samples that ``x[::batch_stride]`` keeps of ``n``: ⌈n / s_n⌉."""
    return -(-n // batch_stride)


def kept_frames(length: int, frame_stride: int) -> int:
    """Frames a layer keeps of ``length`` (strided or pooled): ⌊T / s_t⌋, exact when s_t divides T."""
    return length // frame_stride


def crop_side(size: int, crop_factor: int) -> int:
    """Side of the window that a crop factor c keeps of a ``size``-sided map: ⌊S / c⌋."""
    return size // crop_factor


def batch_reductions(batch_strides: list[int]) -> list[int]:
    """Π of the batch strides up to each level: [1, s_1, s_1·s_2, ...] (the official ``make_x_real``)."""
    return [math.prod(batch_strides[:k]) for k in range(len(batch_strides) + 1)]


def frame_count_that_works(n_frames: int, frame_strides: list[int]) -> int:
    """The smallest frame count ≥ ``n_frames`` that every layer divides: a multiple of Π frame strides.

    Equals ``n_frames`` exactly when the strides split it evenly, i.e. when ``h[b::s]`` keeps the same
    number of frames for every offset b at every layer.
    """
    product = math.prod(frame_strides)
    return max(1, -(-n_frames // product)) * product


class LevelShape(NamedTuple):
    batch: int  # N_l
    frames: int  # T_l
    size: int  # H_l = W_l


def level_plan(
    batch: int,  # N at level 1
    n_frames: int,  # T at level 1
    size: int,  # side at level 1
    frame_strides: list[int],
    batch_strides: list[int],
    crop_factors: list[int],
    growth: int = 2,  # side factor per level after the crop (2: the generator's up-block; 1: raw windows)
) -> list[LevelShape]:
    """``(batch, frames, size)`` of every level: level l+1 is layer l applied to level l.

    With ``growth=2`` these are the generator's training levels (and the real levels after pooling); with
    ``growth=1`` the sides are the real clips' crop windows before pooling. Raises ``ValueError`` when the
    frame strides do not split ``n_frames`` evenly (see ``frame_count_that_works``).
    """
    if frame_count_that_works(n_frames, frame_strides) != n_frames:
        raise ValueError(
            f"n_frames={n_frames} does not split evenly over frame strides {list(frame_strides)}; "
            f"use a multiple of {math.prod(frame_strides)}, e.g. "
            f"{frame_count_that_works(n_frames, frame_strides)}"
        )
    plan = [LevelShape(batch, n_frames, size)]
    for frame_stride, batch_stride, crop_factor in zip(
        frame_strides, batch_strides, crop_factors, strict=True
    ):
        n, t, s = plan[-1]
        plan.append(
            LevelShape(
                kept_batch(n, batch_stride), kept_frames(t, frame_stride), growth * crop_side(s, crop_factor)
            )
        )
    return plan


# --- drawing the randomness ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerDraw:
    """The random choices of one subsampling layer, drawn before the forward.

    ``frame_offset``: an int shared by the batch (fakes; also 0 for stride 1 and average pooling), or a
    LongTensor ``(N_l,)`` with one offset per sample (reals). ``crop_origin``: ``(y0, x0)`` shared, an
    ``(N_l, 2)`` LongTensor per sample, or None when the layer does not crop.
    """

    frame_offset: int | Tensor = 0
    crop_origin: tuple[int, int] | Tensor | None = None


def draw_layers(
    frame_strides: list[int],
    batch_strides: list[int],
    crop_factors: list[int],
    sizes: list[int],  # side of the map each layer crops (the level side before that layer)
    batch: int,  # N at level 1
    rng: np.random.Generator,
    per_sample: bool = False,  # False: the generator's rule (shared); True: the real-data rule
    use_avg_pooling: bool = False,  # pooling has no frame offset
) -> list[LayerDraw]:
    """One ``LayerDraw`` per layer. Per layer: the frame offset(s), then the crop origin(s).

    Offsets are drawn for the samples the layer keeps (after its batch stride). Per-sample draws are CPU
    LongTensors built from NumPy; the caller moves them to the device (e.g. pinned + ``non_blocking``).
    """
    draws = []
    n = batch
    for frame_stride, batch_stride, crop_factor, size in zip(
        frame_strides, batch_strides, crop_factors, sizes, strict=True
    ):
        n = kept_batch(n, batch_stride)
        offset: int | Tensor = 0
        if frame_stride > 1 and not use_avg_pooling:
            offset = (
                torch.from_numpy(rng.integers(0, frame_stride, n))
                if per_sample
                else int(rng.integers(frame_stride))
            )
        origin: tuple[int, int] | Tensor | None = None
        if crop_factor > 1:
            high = size - crop_side(size, crop_factor) + 1  # origins in [0, S − crop]
            if per_sample:
                origin = torch.from_numpy(rng.integers(0, high, (n, 2)))
            else:
                y0, x0 = rng.integers(0, high, 2).tolist()
                origin = (y0, x0)
        draws.append(LayerDraw(offset, origin))
    return draws


# --- applying a layer ----------------------------------------------------------------------------------


def subsample_batch(x: Tensor, batch_stride: int) -> Tensor:
    """Adaptive batch reduction: keep samples ``0, s_n, 2·s_n, ...`` along dim 0."""
    return x if batch_stride == 1 else x[::batch_stride]


def subsample_frames(x: Tensor, frame_stride: int, offset: int | Tensor = 0, time_dim: int = 2) -> Tensor:
    """Keep frames ``b, b + s, ..., b + (T/s − 1)·s`` along ``time_dim`` (Eq. 8-9 with s_n = 1).

    ``offset`` b is an int shared by the batch (a view: no index tensor), or a LongTensor ``(N,)`` with one
    offset per sample along dim 0 (a gather). Either way every sample keeps ``kept_frames(T, s)`` frames,
    which is ``x[b::s]`` when s divides T.
    """
    if frame_stride == 1:
        return x
    n_out = kept_frames(x.shape[time_dim], frame_stride)
    # (..., T/s, s, ...): frame τ·s + b sits at [τ, b]
    grouped = x.narrow(time_dim, 0, n_out * frame_stride).unflatten(time_dim, (n_out, frame_stride))
    if isinstance(offset, int):
        return grouped.select(time_dim + 1, offset)
    shape = [1] * grouped.dim()
    shape[0] = x.shape[0]
    index = (
        offset.to(x.device)
        .view(shape)
        .expand(*grouped.shape[: time_dim + 1], 1, *grouped.shape[time_dim + 2 :])
    )
    return grouped.gather(time_dim + 1, index).squeeze(time_dim + 1)


def avgpool_frames(x: Tensor, frame_stride: int, time_dim: int = 2) -> Tensor:
    """Mean over consecutive groups of ``frame_stride`` frames (T / s groups; the ablation variant)."""
    if frame_stride == 1:
        return x
    groups = kept_frames(x.shape[time_dim], frame_stride)
    x = x.narrow(time_dim, 0, groups * frame_stride)
    return x.unflatten(time_dim, (groups, frame_stride)).mean(dim=time_dim + 1)


def crop_spatial(x: Tensor, crop: int, origins: tuple[int, int] | Tensor) -> Tensor:
    """Square ``crop``-sided window of the last two axes at ``origins``: ``(y0, x0)`` or ``(N, 2)``."""
    if isinstance(origins, tuple):
        y0, x0 = origins
        return x.narrow(-2, y0, crop).narrow(-1, x0, crop)
    rows = origins[:, :1].to(x.device) + torch.arange(crop, device=x.device)  # (N, crop)
    cols = origins[:, 1:].to(x.device) + torch.arange(crop, device=x.device)  # (N, crop)
    mid = [1] * (x.dim() - 3)
    rows = rows.view(x.shape[0], *mid, crop, 1).expand(*x.shape[:-2], crop, x.shape[-1])
    x = torch.gather(x, x.dim() - 2, rows)
    cols = cols.view(x.shape[0], *mid, 1, crop).expand(*x.shape[:-1], crop)
    return torch.gather(x, x.dim() - 1, cols)


def subsample_layer(
    x: Tensor,
    draw: LayerDraw,
    frame_stride: int = 2,
    batch_stride: int = 1,
    crop_factor: int = 1,
    use_avg_pooling: bool = False,
    time_dim: int = 2,
) -> Tensor:
    """One subsampling layer with pre-drawn randomness: batch stride, frames (strided or pooled), crop."""
    x = subsample_batch(x, batch_stride)
    if use_avg_pooling:
        x = avgpool_frames(x, frame_stride, time_dim)
    else:
        x = subsample_frames(x, frame_stride, draw.frame_offset, time_dim)
    if crop_factor > 1:
        x = crop_spatial(x, crop_side(x.shape[-1], crop_factor), draw.crop_origin)
    return x


def box_pool(x: Tensor, factor: int) -> Tensor:
    """Box-mean pooling by ``factor`` over the last two axes of ``(N, C, T, H, W)`` (real levels, §3.3)."""
    if factor == 1:
        return x
    n, c, t, h, w = x.shape
    return F.avg_pool2d(x.reshape(n, c * t, h, w), factor).reshape(n, c, t, h // factor, w // factor)


# --- the torch.Generator path (kept until every caller passes draws) -----------------------------------


def draw_frame_offsets(
    frame_stride: int, n: int | None = None, generator: torch.Generator | None = None
) -> int | Tensor:
    """b_t ~ U{0, frame_stride − 1}: one int (shared, ``n=None``) or a LongTensor of ``n`` (per sample)."""
    size = (1,) if n is None else (n,)
    offsets = torch.randint(0, frame_stride, size, generator=generator, device="cpu")
    return int(offsets.item()) if n is None else offsets


def draw_crop_origins(
    size: int, crop: int, n: int | None = None, generator: torch.Generator | None = None
) -> Tensor:
    """Top-left corners ``(y0, x0)`` for a ``crop``-sized square inside a ``size``-sized one.

    Returns ``(2,)`` (shared by the batch) or ``(n, 2)`` (per sample); each entry is in [0, size − crop].
    """
    shape = (2,) if n is None else (n, 2)
    return torch.randint(0, size - crop + 1, shape, generator=generator, device="cpu")


def subsample(
    x: Tensor,
    frame_stride: int = 2,
    batch_stride: int = 1,
    crop_factor: int = 1,
    use_avg_pooling: bool = False,
    per_sample: bool = False,
    time_dim: int = 2,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``subsample_layer`` with its randomness drawn here from a ``torch.Generator`` (the older path).

    ``per_sample=False`` is the generator's rule (one offset, one crop position for the batch);
    ``per_sample=True`` is the real-data rule. Offsets are drawn after the batch stride, then crops.
    """
    n = kept_batch(x.shape[0], batch_stride) if per_sample else None
    offset: int | Tensor = 0
    if frame_stride > 1 and not use_avg_pooling:
        offset = draw_frame_offsets(frame_stride, n, generator)
    origin: tuple[int, int] | Tensor | None = None
    if crop_factor > 1:
        size = x.shape[-1]
        origin = draw_crop_origins(size, crop_side(size, crop_factor), n, generator)
        if n is None:
            y0, x0 = origin.tolist()
            origin = (y0, x0)
    draw = LayerDraw(offset, origin)
    return subsample_layer(x, draw, frame_stride, batch_stride, crop_factor, use_avg_pooling, time_dim)
