"""Issue 11 §1: fakes, reals and ``level_shapes`` agree at every level and for every offset, or the config
is refused with one line that names ``model.n_frames``, the strides and a frame count that works.

The generator and the real-data path run for real (tiny widths); on the CPU when the levels are small,
on the ``meta`` device (shapes only) when a 6-level, 40-frame batch would take too long.
"""

from __future__ import annotations

import math
import re

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tganv2.config import ConfigError, build_generator, level_shapes, load_preset
from tganv2.data import real_levels_from_config
from tganv2.nn.subsample import LayerDraw, kept_batch

TINY = {"model.t_size": 1, "model.ch": 1, "model.clstm_ch": 2, "model.z_dim": 2, "model.d_ch": 1}
CPU_VOXELS = 40_000  # run on the CPU when Σ N_l·T_l·S_l² of the real clips stays below this


def _overrides(frame_strides, batch_strides, crop_factors, n_frames, batch, avg):
    n = len(frame_strides)
    return {
        **TINY,
        "model.frame_strides": frame_strides,
        "model.batch_strides": batch_strides,
        "model.crop_factors": crop_factors,
        "model.use_avg_pooling": avg,
        "model.render_level": n + 1,
        "model.n_frames": n_frames,
        "train.batch": batch,
    }


def _shapes(videos):
    return [(v.shape[0], v.shape[2], v.shape[3], v.shape[4]) for v in videos]


def _count(data, product: int, high: int) -> int:
    """Any count in 1..high, or (mostly) a multiple of ``product`` in range, when there is one."""
    multiples = (
        st.integers(1, high // product).map(lambda k: k * product) if product <= high else st.nothing()
    )
    return data.draw(st.one_of(multiples, multiples, st.integers(1, high)))


@settings(max_examples=40, deadline=None)
@given(n_layers=st.integers(1, 5), avg=st.booleans(), data=st.data())  # 2-6 levels
def test_fakes_reals_and_level_shapes_agree_or_the_config_is_refused(n_layers, avg, data):
    # strides 1-4, small ones more often so that enough configs fit in 40 frames and 16 samples
    layer = st.lists(st.sampled_from([1, 1, 1, 2, 2, 3, 4]), min_size=n_layers, max_size=n_layers)
    frame_strides, batch_strides = data.draw(layer), data.draw(layer)
    crop_factors = data.draw(st.lists(st.integers(1, 2), min_size=n_layers, max_size=n_layers))
    n_frames = _count(data, math.prod(frame_strides), 40)
    batch = _count(data, math.prod(batch_strides), 16)
    overrides = _overrides(frame_strides, batch_strides, crop_factors, n_frames, batch, avg)
    frames_split = n_frames % math.prod(frame_strides) == 0
    batch_splits = batch % math.prod(batch_strides) == 0 and batch * n_frames > 1  # > 1 value for BN
    try:
        cfg = load_preset("small-64", overrides)
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message
        assert not (frames_split and batch_splits)
        if not frames_split:  # names the field, the strides and a frame count that works
            assert "model.n_frames" in message and str(frame_strides) in message
            works = int(re.search(r"e\.g\. model\.n_frames=(\d+)", message)[1])
            load_preset(
                "small-64", {**overrides, "model.n_frames": works, "train.batch": math.prod(batch_strides)}
            )
        else:
            assert "train.batch" in message
        event("refused")
        return
    assert frames_split and batch_splits
    expected = level_shapes(cfg)
    size = cfg.model.resolution
    voxels = sum(n * t * size**2 for n, t, _, _ in expected)
    device = "cpu" if voxels < CPU_VOXELS else "meta"
    event(f"accepted, run on {device}")
    # every offset may come up: hypothesis picks the shared fake offsets and the per-sample real ones
    fake_draws, real_draws, n = [], [], batch
    for s, b, c in zip(frame_strides, batch_strides, crop_factors):
        n = kept_batch(n, b)
        fake_draws.append(LayerDraw(data.draw(st.integers(0, s - 1)), (0, 0) if c > 1 else None))
        offsets = torch.tensor(data.draw(st.lists(st.integers(0, s - 1), min_size=n, max_size=n)))
        real_draws.append(LayerDraw(offsets, torch.zeros(n, 2, dtype=torch.long) if c > 1 else None))
    with torch.device(device), torch.no_grad():
        generator = build_generator(cfg).train()
        fakes = generator(torch.rand(batch, 2) * 2 - 1, draws=fake_draws)
        clips = torch.rand(batch, 3, n_frames, size, size) * 2 - 1
        reals = real_levels_from_config(clips, cfg.model, draws=real_draws)
    assert _shapes(fakes) == _shapes(reals) == expected
    assert len(expected) == n_layers + 1


def test_the_reported_bug_is_refused():
    """``small-64 model.n_frames=12``: level 4 would get 1 or 2 fake frames depending on the offset."""
    try:
        load_preset("small-64", ["model.n_frames=12"])
    except ConfigError as e:
        assert str(e) == (
            "model.n_frames=12 does not split evenly over model.frame_strides=[2, 2, 2] (fakes and reals "
            "would get levels of different lengths): use a multiple of 8, e.g. model.n_frames=16"
        )
    else:
        raise AssertionError("small-64 with model.n_frames=12 was accepted")
