"""Multi-level real clips, the real-data subsampling S^D (paper §3, reference.md §3.3).

From a batch of real clips ``x`` ``(N, 3, T, S, S)`` (S = the final resolution, e.g. 192):
  * level 1 is the full clip;
  * level l+1 is level l (at full resolution) passed through the same subsampling layer the generator uses,
    ``tganv2.nn.subsample.subsample`` with ``per_sample=True``: every ``batch_strides[l]``-th sample, then
    frames ``o, o + s, ...`` with a frame offset ``o`` drawn per sample (official real-data rule), or the
    mean over groups of ``s`` frames with ``use_avg_pooling``; with ``crop_factors[l] = c > 1``, a random
    window of 1/c of its side (paper §3.1; nested, so level l+1 lies inside level l's window);
  * each level is then box-mean pooled to the generator's level size: 8×8 / 4×4 / 2×2 / 1 for the four
    levels of the 192-px model (``box_pool``, applied after the temporal subsampling).
Batch strides compose, so level l keeps every S_l-th sample with S = cumprod([1] + batch_strides), which is
what the official updater's ``make_x_real`` does. The result has the shapes of
``tganv2.config.level_shapes(cfg, N)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from ..nn.subsample import LayerDraw, box_pool, subsample
from .base import to_float

__all__ = ["make_real_levels", "real_levels_from_config"]


def _pool_to(x: Tensor, size: int) -> Tensor:
    """Box-mean pool the last two axes of ``(N, C, T, H, W)`` down to ``size``."""
    height = x.shape[-1]
    if height == size:
        return x
    if height % size == 0:
        return box_pool(x, height // size)
    n, c, t, h, w = x.shape
    pooled = F.adaptive_avg_pool2d(x.reshape(n, c * t, h, w), size)  # (N, C·T, size, size)
    return pooled.reshape(n, c, t, size, size)


def make_real_levels(
    x: Tensor,
    frame_strides: list[int],
    batch_strides: list[int],
    crop_factors: list[int] | None = None,
    use_avg_pooling: bool = False,
    generator: torch.Generator | None = None,
    level_sizes: list[int] | None = None,
    draws: list[LayerDraw] | None = None,
) -> list[Tensor]:
    """The L = len(frame_strides) + 1 real level videos of a batch ``(N, 3, T, S, S)``.

    ``x`` is float in [-1, 1] (uint8 clips are converted with ``to_float``). ``level_sizes`` are the
    generator's level resolutions; by default S / 2^(L − l) for level l (24/48/96/192 for S = 192), which is
    what ``level_shapes`` gives without crops. Offsets and crop positions come from ``draws`` (per-sample
    ``draw_layers``) if given, else from ``generator``.
    """
    if x.dim() != 5 or x.shape[-1] != x.shape[-2]:
        raise DataError(f"real clips must be (N, C, T, S, S), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = to_float(x)
    n_layers = len(frame_strides)
    crop_factors = list(crop_factors) if crop_factors is not None else [1] * n_layers
    if len(batch_strides) != n_layers or len(crop_factors) != n_layers:
        raise DataError("frame_strides, batch_strides and crop_factors must have the same length")
    if level_sizes is None:
        level_sizes = [x.shape[-1] // 2 ** (n_layers - level) for level in range(n_layers + 1)]
    full_resolution = [x]  # level l at the input resolution (inside its crop window)
    for k, (frame_stride, batch_stride, crop_factor) in enumerate(
        zip(frame_strides, batch_strides, crop_factors)
    ):
        full_resolution.append(
            subsample(
                full_resolution[-1],
                frame_stride=frame_stride,
                batch_stride=batch_stride,
                crop_factor=crop_factor,
                use_avg_pooling=use_avg_pooling,
                per_sample=True,
                generator=generator,
                draw=None if draws is None else draws[k],
            )
        )
    return [_pool_to(level, size) for level, size in zip(full_resolution, level_sizes)]


def real_levels_from_config(
    x: Tensor, model_cfg, generator: torch.Generator | None = None, draws: list[LayerDraw] | None = None
) -> list[Tensor]:
    """``make_real_levels`` with the strides, crops and level sizes of a ``ModelConfig``."""
    resolution = model_cfg.resolution
    if x.shape[-1] != resolution or x.shape[-2] != resolution or x.shape[2] != model_cfg.n_frames:
        raise DataError(
            f"real clips are {tuple(x.shape)}, but the model expects (N, 3, {model_cfg.n_frames}, "
            f"{resolution}, {resolution}); open the dataset with n_frames={model_cfg.n_frames}, "
            f"size={resolution}"
        )
    return make_real_levels(
        x,
        frame_strides=list(model_cfg.frame_strides),
        batch_strides=list(model_cfg.batch_strides),
        crop_factors=list(model_cfg.crop_factors),
        use_avg_pooling=model_cfg.use_avg_pooling,
        generator=generator,
        level_sizes=model_cfg.level_sizes,  # the generator's rule
        draws=draws,
    )
