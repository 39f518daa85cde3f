"""Subsampling layers against the paper's Eq. 8-9, written out as an explicit Boolean tensor B.

h'[m, c, τ, h, w] = Σ_{n,t} B(m, τ, n, t) h[n, c, t, h, w],  B = 1 iff n = m·s_n and t = τ·s_t + b_t,
for τ < T // s_t. Also the level arithmetic (``level_plan``) and the pre-drawn randomness (``draw_layers``).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tganv2.nn.subsample import (
    LayerDraw,
    LevelShape,
    avgpool_frames,
    crop_spatial,
    draw_crop_origins,
    draw_frame_offsets,
    draw_layers,
    frame_count_that_works,
    level_plan,
    subsample,
    subsample_batch,
    subsample_frames,
    subsample_layer,
)

SETTINGS = settings(max_examples=40, deadline=None)


def selection_matrix(
    n: int, t: int, batch_stride: int, frame_stride: int, offsets: list[int]
) -> torch.Tensor:
    """B(m, τ, n, t) of Eq. 9 as a float64 tensor; ``offsets[m]`` is b_t of output sample m.

    Every sample keeps T // s frames, whatever its offset (NumPy's ``h[b::s]`` when s divides T).
    """
    m_out = len(range(0, n, batch_stride))
    tau_out = t // frame_stride
    b_mat = torch.zeros(m_out, tau_out, n, t, dtype=torch.float64)
    for m in range(m_out):
        for tau in range(tau_out):
            b_mat[m, tau, m * batch_stride, tau * frame_stride + offsets[m]] = 1.0
    return b_mat


def eq8(h: torch.Tensor, b_mat: torch.Tensor) -> torch.Tensor:
    """Eq. 8 for ``h`` of shape (N, C, T, H, W)."""
    return torch.einsum("mund,ncdhw->mcuhw", b_mat, h)


shapes = st.tuples(
    st.integers(1, 6),  # N
    st.integers(1, 3),  # C
    st.integers(1, 12),  # T
    st.integers(1, 4),  # H
    st.integers(1, 4),  # W
)
SEEDED_LAYERS = {  # a subsampling layer drawing its own offsets from a seeded torch.Generator
    "shape": shapes,
    "batch_stride": st.integers(1, 3),
    "frame_stride": st.integers(2, 4),
    "seed": st.integers(0, 2**31),
}


def clip_of(shape: tuple[int, ...], frame_stride: int, **kwargs) -> torch.Tensor:
    """A random float64 (N, C, T, H, W) tensor of ``shape``, lengthened to T >= ``frame_stride``."""
    n, c, t, hgt, wdt = shape
    return torch.randn(n, c, max(t, frame_stride), hgt, wdt, dtype=torch.float64, **kwargs)


@SETTINGS
@given(shape=shapes, batch_stride=st.integers(1, 4), frame_stride=st.integers(1, 4), data=st.data())
def test_shared_offset_matches_eq8(shape, batch_stride, frame_stride, data):
    n, c, t, hgt, wdt = shape
    offset = data.draw(st.integers(0, min(frame_stride, t) - 1))
    h = torch.randn(shape, dtype=torch.float64)
    out = subsample_frames(subsample_batch(h, batch_stride), frame_stride, offset)
    m_out = len(range(0, n, batch_stride))
    expected = eq8(h, selection_matrix(n, t, batch_stride, frame_stride, [offset] * m_out))
    assert out.shape == (m_out, c, t // frame_stride, hgt, wdt)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    if t % frame_stride == 0:  # the official slicing, for every offset
        assert torch.equal(out, h[::batch_stride, :, offset::frame_stride])


@SETTINGS
@given(shape=shapes, batch_stride=st.integers(1, 4), frame_stride=st.integers(2, 4), data=st.data())
def test_per_sample_offsets_match_eq8(shape, batch_stride, frame_stride, data):
    h = clip_of(shape, frame_stride)
    n, c, t, hgt, wdt = h.shape
    m_out = len(range(0, n, batch_stride))
    offsets = data.draw(st.lists(st.integers(0, frame_stride - 1), min_size=m_out, max_size=m_out))
    out = subsample_frames(subsample_batch(h, batch_stride), frame_stride, torch.tensor(offsets))
    b_mat = selection_matrix(n, t, batch_stride, frame_stride, offsets)
    assert b_mat.shape[1] == t // frame_stride  # every sample keeps T // s frames
    torch.testing.assert_close(out, eq8(h, b_mat), rtol=0, atol=0)


@SETTINGS
@given(**SEEDED_LAYERS)
def test_subsample_layer_is_eq8_for_some_offset_in_range(shape, batch_stride, frame_stride, seed):
    """``subsample`` (generator rule) keeps h[::s_n, b::s_t] for one b in {0..s_t-1}, reproducibly."""
    h = clip_of(shape, frame_stride)
    n, c, t, hgt, wdt = h.shape
    out = subsample(h, frame_stride, batch_stride, generator=torch.Generator().manual_seed(seed))
    again = subsample(h, frame_stride, batch_stride, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(out, again)
    m_out = len(range(0, n, batch_stride))
    matches = [
        b
        for b in range(frame_stride)
        if torch.equal(out, eq8(h, selection_matrix(n, t, batch_stride, frame_stride, [b] * m_out)))
    ]
    assert matches, "output is not Eq. 8 for any offset in range"


@SETTINGS
@given(**SEEDED_LAYERS)
def test_per_sample_subsample_layer_picks_offsets_in_range(shape, batch_stride, frame_stride, seed):
    """``subsample(per_sample=True)`` (real-data rule): each kept sample is h[m·s_n, b_m::s_t][:T//s]."""
    h = clip_of(shape, frame_stride)
    n, c, t, hgt, wdt = h.shape
    out = subsample(
        h, frame_stride, batch_stride, per_sample=True, generator=torch.Generator().manual_seed(seed)
    )
    assert out.shape == (len(range(0, n, batch_stride)), c, t // frame_stride, hgt, wdt)
    for m in range(out.shape[0]):
        candidates = [
            h[m * batch_stride, :, b::frame_stride][:, : t // frame_stride] for b in range(frame_stride)
        ]
        assert any(torch.equal(out[m], cand) for cand in candidates)


@SETTINGS
@given(shape=shapes, frame_stride=st.integers(1, 4), time_dim=st.sampled_from([1, 2]))
def test_avg_pooling_equals_group_means(shape, frame_stride, time_dim):
    h = torch.randn(shape, dtype=torch.float64)
    if time_dim == 1:
        h = h.transpose(1, 2).contiguous()  # (N, T, C, H, W)
    out = avgpool_frames(h, frame_stride, time_dim)
    length = h.shape[time_dim]
    groups = [
        torch.stack([h.select(time_dim, g * frame_stride + k) for k in range(frame_stride)]).mean(0)
        for g in range(length // frame_stride)
    ]
    assert out.shape[time_dim] == length // frame_stride
    if groups:
        torch.testing.assert_close(out, torch.stack(groups, dim=time_dim), rtol=1e-12, atol=1e-12)


def test_avg_pooling_layer_has_no_randomness_and_applies_batch_stride():
    h = torch.arange(6 * 8, dtype=torch.float64).view(6, 1, 8, 1, 1)
    out = subsample(h, 2, 3, use_avg_pooling=True, generator=torch.Generator().manual_seed(1))
    # samples 0 and 3, frame pairs averaged: sample k has values 8k + (0.5, 2.5, 4.5, 6.5)
    expected = torch.tensor([[0.5, 2.5, 4.5, 6.5], [24.5, 26.5, 28.5, 30.5]], dtype=torch.float64)
    torch.testing.assert_close(out.view(2, 4), expected)


@SETTINGS
@given(
    n=st.integers(1, 4),
    size=st.integers(2, 9),
    crop_div=st.integers(1, 3),
    seed=st.integers(0, 2**31),
    per_sample=st.booleans(),
)
def test_crop_equals_explicit_slicing(n, size, crop_div, seed, per_sample):
    crop = max(1, size // crop_div)
    x = torch.randn(n, 2, 3, size, size)
    gen = torch.Generator().manual_seed(seed)
    origins = draw_crop_origins(size, crop, n if per_sample else None, gen)
    assert origins.min() >= 0 and origins.max() <= size - crop
    out = crop_spatial(x, crop, origins if per_sample else tuple(origins.tolist()))
    per = origins if per_sample else origins.expand(n, 2)
    expected = torch.stack(
        [x[i, ..., y0 : y0 + crop, x0 : x0 + crop] for i, (y0, x0) in enumerate(per.tolist())]
    )
    assert torch.equal(out, expected)


def test_crop_factor_in_subsample_layer():
    x = torch.randn(2, 3, 4, 8, 8)
    out = subsample(x, frame_stride=1, crop_factor=2, generator=torch.Generator().manual_seed(3))
    assert out.shape == (2, 3, 4, 4, 4)
    hits = [
        (y0, x0) for y0 in range(5) for x0 in range(5) if torch.equal(out, x[..., y0 : y0 + 4, x0 : x0 + 4])
    ]
    assert len(hits) == 1  # one shared window for the whole batch (generator rule)


@pytest.mark.parametrize("frame_stride", [2, 3, 4])
def test_offsets_reproducible_in_range_and_cover_all_values(frame_stride):
    a = draw_frame_offsets(frame_stride, 300, torch.Generator().manual_seed(7))
    b = draw_frame_offsets(frame_stride, 300, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert a.dtype == torch.int64 and set(a.tolist()) == set(range(frame_stride))
    shared = [draw_frame_offsets(frame_stride, None, torch.Generator().manual_seed(s)) for s in range(60)]
    assert all(isinstance(o, int) and 0 <= o < frame_stride for o in shared)
    assert set(shared) == set(range(frame_stride))
    different = draw_frame_offsets(frame_stride, 300, torch.Generator().manual_seed(8))
    assert not torch.equal(a, different)


@SETTINGS
@given(
    shape=shapes,
    batch_stride=st.integers(1, 3),
    frame_stride=st.integers(2, 3),
    per_sample=st.booleans(),
    data=st.data(),
)
def test_gradient_is_b_transpose_times_upstream(shape, batch_stride, frame_stride, per_sample, data):
    """Kept entries receive the upstream gradient, dropped ones exactly zero: grad = Bᵀ · upstream."""
    h = clip_of(shape, frame_stride, requires_grad=True)
    n, c, t, hgt, wdt = h.shape
    m_out = len(range(0, n, batch_stride))
    offsets = data.draw(st.lists(st.integers(0, frame_stride - 1), min_size=m_out, max_size=m_out))
    if per_sample:
        out = subsample_frames(subsample_batch(h, batch_stride), frame_stride, torch.tensor(offsets))
    else:
        offsets = [offsets[0]] * m_out
        out = subsample_frames(subsample_batch(h, batch_stride), frame_stride, offsets[0])
    upstream = torch.randn_like(out)
    out.backward(upstream)
    b_mat = selection_matrix(n, t, batch_stride, frame_stride, offsets)
    expected = torch.einsum("mund,mcuhw->ncdhw", b_mat, upstream)
    torch.testing.assert_close(h.grad, expected, rtol=0, atol=0)


def test_gradcheck_float64():
    h = torch.randn(4, 2, 6, 2, 2, dtype=torch.float64, requires_grad=True)
    offsets = torch.tensor([1, 0])
    assert torch.autograd.gradcheck(lambda x: subsample_frames(subsample_batch(x, 2), 2, offsets), (h,))
    assert torch.autograd.gradcheck(lambda x: avgpool_frames(x, 3), (h,))
    assert torch.autograd.gradcheck(
        lambda x: crop_spatial(x, 1, torch.tensor([[1, 0], [0, 1], [1, 1], [0, 0]])), (h,)
    )


def test_generator_layout_time_dim_1():
    """The generator applies the rule to (N, T, C, H, W) with time_dim=1: same selection as time_dim=2."""
    h = torch.randn(4, 3, 8, 2, 2)
    a = subsample(h, 2, 2, time_dim=2, generator=torch.Generator().manual_seed(5))
    b = subsample(h.transpose(1, 2), 2, 2, time_dim=1, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b.transpose(1, 2))


# --- level arithmetic ------------------------------------------------------------------------------------


def test_level_plan_of_the_official_models():
    assert level_plan(4, 16, 24, [2, 2, 2], [1, 1, 1], [1, 1, 1]) == [
        (4, 16, 24), (4, 8, 48), (4, 4, 96), (4, 2, 192),
    ]  # fmt: skip
    assert level_plan(5, 16, 24, [2, 2, 2], [2, 2, 2], [2, 1, 2]) == [
        (5, 16, 24), (3, 8, 24), (2, 4, 48), (1, 2, 48),
    ]  # fmt: skip
    # growth 1: the real clips' windows before pooling (192 px clips, crops of 1/2 then 1/2)
    assert [lv.size for lv in level_plan(1, 16, 192, [2, 2, 2], [1, 1, 1], [2, 1, 2], growth=1)] == [
        192, 96, 96, 48,
    ]  # fmt: skip
    assert isinstance(level_plan(1, 2, 8, [2], [1], [1])[1], LevelShape)


@pytest.mark.parametrize(
    "n_frames, strides, works", [(16, [2, 2, 2], 16), (12, [2, 2, 2], 16), (16, [3, 3, 3], 27), (1, [2], 2)]
)
def test_frame_count_that_works_is_the_next_multiple_of_the_stride_product(n_frames, strides, works):
    assert frame_count_that_works(n_frames, strides) == works
    if works != n_frames:
        with pytest.raises(ValueError, match=f"n_frames={n_frames} .* e.g. {works}"):
            level_plan(1, n_frames, 8, strides, [1] * len(strides), [1] * len(strides))


@SETTINGS
@given(
    n=st.integers(1, 9),
    strides=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 2)), min_size=1, max_size=3
    ),
    data=st.data(),
)
def test_level_plan_is_what_the_layers_keep_for_every_draw(n, strides, data):
    """Shared (int) and per-sample draws alike give the shapes ``level_plan`` (growth 1) predicts."""
    frame_strides, batch_strides, crops = (list(v) for v in zip(*strides))
    t = frame_count_that_works(data.draw(st.integers(1, 12)), frame_strides)
    plan = level_plan(n, t, 4, frame_strides, batch_strides, crops, growth=1)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    for per_sample in (False, True):
        sizes = [lv.size for lv in plan[:-1]]
        draws = draw_layers(frame_strides, batch_strides, crops, sizes, n, rng, per_sample=per_sample)
        x = torch.zeros(n, 1, t, 4, 4)
        shapes = [(n, t, 4)]
        for draw, fs, bs, c in zip(draws, frame_strides, batch_strides, crops):
            x = subsample_layer(x, draw, fs, bs, c)
            shapes.append((x.shape[0], x.shape[2], x.shape[3]))
        assert shapes == plan


# --- pre-drawn randomness --------------------------------------------------------------------------------


def test_draw_layers_types_ranges_and_reproducibility():
    args = ([2, 3, 1], [1, 2, 1], [2, 1, 2], [8, 8, 8], 6)
    shared = draw_layers(*args, np.random.default_rng(4))
    assert shared == draw_layers(*args, np.random.default_rng(4))
    assert all(isinstance(d.frame_offset, int) for d in shared)  # plain ints: slicing, no index tensor
    assert shared[2].frame_offset == 0 and shared[1].crop_origin is None
    assert isinstance(shared[0].crop_origin, tuple) and all(0 <= v <= 4 for v in shared[0].crop_origin)
    per = draw_layers(*args, np.random.default_rng(4), per_sample=True)
    assert per[0].frame_offset.dtype == torch.int64 and per[0].frame_offset.device.type == "cpu"
    assert per[0].frame_offset.shape == (6,) and per[1].frame_offset.shape == (3,)  # after the batch stride
    assert per[0].crop_origin.shape == (6, 2) and per[2].crop_origin.shape == (3, 2)
    pooled = draw_layers(*args, np.random.default_rng(4), use_avg_pooling=True)
    assert [d.frame_offset for d in pooled] == [0, 0, 0]
    # every offset value in range occurs, shared and per sample
    offsets = {
        draw_layers([3], [1], [1], [8], 1, np.random.default_rng(s))[0].frame_offset for s in range(40)
    }
    assert offsets == {0, 1, 2}
    many = draw_layers([3], [1], [1], [8], 300, np.random.default_rng(0), per_sample=True)[0].frame_offset
    assert set(many.tolist()) == {0, 1, 2}


@SETTINGS
@given(shape=shapes, batch_stride=st.integers(1, 3), frame_stride=st.integers(1, 4), data=st.data())
def test_subsample_layer_with_a_shared_draw_is_eq8_then_the_crop(shape, batch_stride, frame_stride, data):
    n, c, t, hgt, _ = shape
    t = max(t, frame_stride)
    h = torch.randn(n, c, t, hgt, hgt, dtype=torch.float64)
    offset = data.draw(st.integers(0, frame_stride - 1))
    crop = max(1, hgt // 2)
    y0, x0 = data.draw(st.integers(0, hgt - crop)), data.draw(st.integers(0, hgt - crop))
    out = subsample_layer(h, LayerDraw(offset, (y0, x0)), frame_stride, batch_stride, 2 if hgt > 1 else 1)
    m_out = len(range(0, n, batch_stride))
    expected = eq8(h, selection_matrix(n, t, batch_stride, frame_stride, [offset] * m_out))
    if hgt > 1:
        expected = expected[..., y0 : y0 + crop, x0 : x0 + crop]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
