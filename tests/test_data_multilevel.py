"""Multi-level real clips (reference.md §3.3): shapes per preset, pooling, per-sample offsets, strides."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tganv2.config import PRESETS, apply_overrides, level_shapes, load_preset
from tganv2.data import make_real_levels, real_levels_from_config
from tganv2.errors import DataError
from tganv2.nn.subsample import LayerDraw


def coded_clips(n, t, size):
    """(N, 3, T, S, S): channel 0 = frame index, 1 = sample index, 2 = smooth spatial pattern."""
    x = torch.zeros(n, 3, t, size, size)
    x[:, 0] = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1)
    x[:, 1] = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1)
    ys = torch.arange(size, dtype=torch.float32)
    x[:, 2] = (ys.view(-1, 1) * 0.01 - ys.view(1, -1) * 0.003).sin()
    return x


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("variant", ["as-is", "avg-pooling", "crops"])
def test_shapes_equal_level_shapes_for_every_preset(preset, variant):
    base = load_preset(preset)
    overrides = {} if variant == "as-is" else {"model.t_size": 1}  # variants at 64 px to stay fast
    if variant == "avg-pooling":
        overrides["model.use_avg_pooling"] = True
    if variant == "crops":
        overrides["model.crop_factors"] = [2, 1, 2][: len(base.model.frame_strides)]
    cfg = apply_overrides(base, overrides)
    batch, resolution = 8, cfg.model.resolution
    x = torch.rand(batch, 3, cfg.model.n_frames, resolution, resolution) * 2 - 1
    levels = real_levels_from_config(x, cfg.model, torch.Generator().manual_seed(0))
    shapes = [(level.shape[0], level.shape[2], level.shape[3], level.shape[4]) for level in levels]
    assert shapes == level_shapes(cfg, batch)
    assert all(level.shape[1] == 3 for level in levels)


def test_official_192_geometry():
    cfg = load_preset("ucf101-192")
    x = torch.rand(2, 3, 16, 192, 192)
    levels = real_levels_from_config(x, cfg.model, torch.Generator().manual_seed(0))
    assert [tuple(level.shape) for level in levels] == [
        (2, 3, 16, 24, 24),
        (2, 3, 8, 48, 48),
        (2, 3, 4, 96, 96),
        (2, 3, 2, 192, 192),
    ]


def test_pooling_is_box_mean_after_temporal_subsampling():
    n, t, size = 4, 16, 32
    x = torch.randn(n, 3, t, size, size)
    generator = torch.Generator().manual_seed(1)
    levels = make_real_levels(x, [2, 2, 2], [1, 1, 1], generator=generator)
    # level 1: all frames, 8x8 box means computed by an explicit reshape
    explicit = x.reshape(n, 3, t, size // 8, 8, size // 8, 8).mean(dim=(4, 6))  # (N, C, T, S/8, S/8)
    torch.testing.assert_close(levels[0], explicit)
    # replay the offsets: the subsampling layer draws one offset per sample per layer, in order
    replay = torch.Generator().manual_seed(1)
    frames = [torch.arange(t).expand(n, t)]
    for _ in range(3):
        offsets = torch.randint(0, 2, (n,), generator=replay)
        frames.append(torch.stack([f[o::2] for f, o in zip(frames[-1], offsets)]))
    for level, factor in zip(range(1, 4), (4, 2, 1)):
        chosen = torch.stack([x[i, :, frames[level][i]] for i in range(n)])  # (N, C, T_l, S, S)
        s = size // factor
        explicit = chosen.reshape(n, 3, -1, s, factor, s, factor).mean(dim=(4, 6))
        torch.testing.assert_close(levels[level], explicit)


def test_offsets_are_per_sample_and_nested():
    n, t = 64, 16
    x = coded_clips(n, t, 16)
    levels = make_real_levels(x, [2, 2, 2], [1, 1, 1], generator=torch.Generator().manual_seed(3))
    frame_ids = [level[:, 0, :, 0, 0].round().long() for level in levels]  # (N, T_l) frame numbers
    assert frame_ids[0].tolist() == [list(range(t))] * n
    for coarse, fine in zip(frame_ids[:-1], frame_ids[1:]):
        assert fine.shape[1] == coarse.shape[1] // 2
        offsets = []
        for sample in range(n):
            # each level keeps frames o, o + 2, ... of the previous level's frames, o in {0, 1}
            matches = [o for o in (0, 1) if coarse[sample, o::2].tolist() == fine[sample].tolist()]
            assert len(matches) == 1
            offsets.append(matches[0])
        assert 0 < sum(offsets) < n  # drawn per sample, not shared by the batch
    assert {tuple(row) for row in frame_ids[3].tolist()} <= {(a, a + 8) for a in range(8)}


def test_batch_strides_keep_every_s_th_sample():
    x = coded_clips(8, 16, 8)
    levels = make_real_levels(x, [2, 2, 2], [2, 2, 2], generator=torch.Generator().manual_seed(0))
    kept = [level[:, 1, 0, 0, 0].round().long().tolist() for level in levels]
    assert kept == [list(range(8)), [0, 2, 4, 6], [0, 4], [0]]


def test_average_pooling_variant_has_no_randomness():
    x = coded_clips(2, 16, 8)
    levels = make_real_levels(x, [2, 2, 2], [1, 1, 1], use_avg_pooling=True)
    assert levels[1][0, 0, :, 0, 0].tolist() == [0.5 + 2 * k for k in range(8)]
    assert levels[3][1, 0, :, 0, 0].tolist() == [3.5, 11.5]


def test_crops_are_nested_windows():
    size, n = 64, 6
    x = torch.zeros(n, 3, 8, size, size)
    x[:, 0] = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)  # row index
    x[:, 1] = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)  # column index
    levels = make_real_levels(
        x,
        [2, 2, 2],
        [1, 1, 1],
        crop_factors=[2, 2, 2],
        generator=torch.Generator().manual_seed(5),
        level_sizes=[8, 8, 8, 8],
    )
    previous = None
    for level, side in zip(levels, (64, 32, 16, 8)):
        rows = level[:, 0, 0, :, 0]  # (N, 8): pooled row coordinates
        low, high = rows[:, 0] - (side / 8 - 1) / 2, rows[:, -1] + (side / 8 - 1) / 2
        torch.testing.assert_close(high - low + 1, torch.full((n,), float(side)))
        if previous is not None:
            assert (low >= previous[0]).all() and (high <= previous[1]).all()
        previous = (low, high)


def test_uint8_input_and_reproducibility():
    x = torch.randint(0, 256, (4, 3, 16, 16, 16), dtype=torch.uint8)
    a = make_real_levels(x, [2, 2, 2], [1, 1, 1], generator=torch.Generator().manual_seed(9))
    b = make_real_levels(x, [2, 2, 2], [1, 1, 1], generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert a[3].min() >= -1 and a[3].max() <= 0.9921875 and a[3].dtype == torch.float32


def test_wrong_clip_size_is_a_data_error():
    cfg = load_preset("small-64")
    with pytest.raises(DataError, match=r"model expects \(N, 3, 16, 64, 64\)"):
        real_levels_from_config(torch.zeros(2, 3, 16, 32, 32), cfg.model)


def test_predrawn_per_sample_draws_pick_frames_and_windows():
    """``ModelConfig.layer_draws(reals=True)``: sample i of level 2 has frames o_i, o_i + 2, ... of the
    32-px window at origin_i, box-pooled to 8 px; the torch.Generator path is the same rule."""
    cfg = load_preset("small-64", ["model.n_frames=8", "model.crop_factors=[2, 1, 1]", "train.batch=4"])
    n, size = 4, cfg.model.resolution
    x = torch.zeros(n, 3, 8, size, size)
    x[:, 0] = torch.arange(8, dtype=torch.float32).view(1, 8, 1, 1)  # frame index
    x[:, 1] = torch.arange(size, dtype=torch.float32).view(1, 1, size, 1)  # row index
    x[:, 2] = torch.arange(size, dtype=torch.float32).view(1, 1, 1, size)  # column index
    draws = cfg.model.layer_draws(n, np.random.default_rng(2), reals=True)
    again = cfg.model.layer_draws(n, np.random.default_rng(2), reals=True)
    assert all(torch.equal(a.frame_offset, b.frame_offset) for a, b in zip(draws, again))
    offsets, origins = draws[0].frame_offset, draws[0].crop_origin  # (N,), (N, 2)
    assert origins.shape == (n, 2) and int(origins.max()) <= size - size // 2
    assert draws[1].crop_origin is None and draws[1].frame_offset.shape == (n,)
    levels = real_levels_from_config(x, cfg.model, draws=draws)
    assert levels[1].shape == (n, 3, 4, 8, 8)
    for i in range(n):
        o, (y0, x0) = int(offsets[i]), origins[i].tolist()
        assert levels[1][i, 0, :, 0, 0].tolist() == [float(f) for f in range(o, 8, 2)]
        assert levels[1][i, 1, 0, 0, 0].item() == y0 + 1.5  # mean of rows y0 .. y0 + 3
        assert levels[1][i, 2, 0, 0, 0].item() == x0 + 1.5
    # the older path draws per layer the offsets, then the crop origins, from its torch.Generator
    replay = torch.Generator().manual_seed(7)
    replayed = [
        LayerDraw(torch.randint(0, 2, (n,), generator=replay), torch.randint(0, 33, (n, 2), generator=replay))
    ]
    replayed += [LayerDraw(torch.randint(0, 2, (n,), generator=replay)) for _ in range(2)]
    legacy = real_levels_from_config(x, cfg.model, generator=torch.Generator().manual_seed(7))
    from_draws = real_levels_from_config(x, cfg.model, draws=replayed)
    assert all(torch.equal(a, b) for a, b in zip(legacy, from_draws))


def test_frame_counts_that_do_not_split_are_a_data_error():
    with pytest.raises(DataError, match=r"real clips of 12 frames: n_frames=12 does not split evenly"):
        make_real_levels(torch.zeros(2, 3, 12, 16, 16), [2, 2, 2], [1, 1, 1])
