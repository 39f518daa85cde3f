"""The multi-level generator against reference §1 and §8 (shapes, counts, ConvLSTM, blocks, BN, init)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import tganv2.nn.generator as generator_module
import tganv2.nn.subsample as subsample_module
from tganv2.config import build_generator, level_shapes, load_config, load_preset
from tganv2.nn.clstm import ConvLSTM, ConvLSTMCell
from tganv2.nn.generator import ConditionalBatchNorm2d, Generator, Renderer, UpBlock, block_channels
from tganv2.nn.subsample import LayerDraw


def _rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _video_shapes(levels: list[torch.Tensor]) -> list[tuple[int, int, int, int]]:
    """(N, C, T, H, W) videos → (N, T, H, W), the layout of ``level_shapes``."""
    assert all(v.shape[1] == 3 for v in levels)
    return [(v.shape[0], v.shape[2], v.shape[3], v.shape[4]) for v in levels]


# --- full-size counts (meta device, no memory) ----------------------------------------------------------


def test_full_size_parameter_counts():
    with torch.device("meta"):
        gen = build_generator(load_preset("ucf101-192"))
    assert sum(p.numel() for p in gen.parameters()) == 88_032_460
    assert sum(p.numel() for p in gen.fc.parameters()) == 256 * 9216 + 9216
    assert sum(p.numel() for p in gen.clstm.parameters()) == 2 * 4096 * 1024 * 9 + 4096  # ≈ 75.5 M
    assert [(b.conv1.in_channels, b.conv1.out_channels) for b in gen.blocks] == [
        (1024, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 32),
    ]  # fmt: skip
    assert [r.conv.in_channels for r in gen.renderers] == [128, 64, 32, 32]
    assert block_channels(32, 1024, 4) == [(1024, 512), (512, 256), (256, 128), (128, 64), (64, 32), (32, 32)]
    # model.min_block_ch floors the widths after level 1 only; ch 32 already meets a floor of 32
    assert block_channels(32, 1024, 4, min_block_ch=32) == block_channels(32, 1024, 4)
    assert block_channels(8, 64, 3) == [(64, 128), (128, 64), (64, 32), (32, 16), (16, 8)]
    assert block_channels(8, 64, 3, min_block_ch=32) == [(64, 128), (128, 64), (64, 32), (32, 32), (32, 32)]
    # model.build_blocks keeps the last build blocks: 2 → clstm→ch·8→ch·4, 1 → clstm→ch·4 (the port's layout)
    assert block_channels(8, 64, 3, build_blocks=2) == [(64, 64), (64, 32), (32, 16), (16, 8)]
    assert block_channels(8, 32, 3, min_block_ch=32, build_blocks=1) == [(32, 32), (32, 32), (32, 32)]


@pytest.mark.parametrize("t_size, build_blocks", [(2, 3), (4, 2), (8, 1)])
def test_build_blocks_keep_the_level_sizes(tiny_cfg, t_size, build_blocks):
    """A t×t grid with k build blocks renders level 1 at t·2^k px: 16/32/64 px for 2×2·8, 4×4·4 and 8×8·2.

    Renderer l reads block (k + l − 1)'s output; the parameter count is the closed form of the layout."""
    cfg = tiny_cfg(
        "model.batch_strides=[1, 2]",  # whole frames at every level (demo-64 crops its last one)
        "model.crop_factors=[1, 1]",
        preset="demo-64",
        t_size=t_size,
        build_blocks=build_blocks,
        clstm_ch=16,
        ch=2,
        min_block_ch=4,
        z_dim=8,
    )
    gen = build_generator(cfg).train()
    levels = gen(gen.make_z(4), rng=_rng())
    assert _video_shapes(levels) == level_shapes(cfg) == [(4, 8, 16, 16), (4, 4, 32, 32), (2, 2, 64, 64)]
    assert gen.level1_size == cfg.model.level1_size == 16
    assert gen.eval()(gen.make_z(2)).shape == (2, 3, 8, 64, 64)
    channels = block_channels(2, 16, 3, 4, build_blocks)
    assert len(gen.blocks) == build_blocks + 2
    assert [r.conv.in_channels for r in gen.renderers] == [o for _, o in channels[build_blocks - 1 :]]

    def up_block(i: int, o: int) -> int:  # conv1, conv2, 1×1 shortcut (with biases), 2 BNs (γ, β)
        return 9 * i * o + o + 9 * o * o + o + i * o + o + 2 * i + 2 * o

    fc = (8 + 1) * t_size * t_size * 16
    clstm = 2 * 9 * 16 * 64 + 64  # w_x (with bias) and w_h, 16 → 4·16 channels
    renderers = sum(2 * o + 9 * o * 3 + 3 for _, o in channels[build_blocks - 1 :])
    expected = fc + clstm + sum(up_block(i, o) for i, o in channels) + renderers
    assert sum(p.numel() for p in gen.parameters()) == expected


def test_faceforensics_counts_differ_only_in_fc():
    with torch.device("meta"):
        ucf = build_generator(load_preset("ucf101-192"))
        ff = build_generator(load_preset("faceforensics-256"))
    assert ff.fc.weight.shape == (4 * 4 * 1024, 256)
    assert (
        sum(p.numel() for p in ff.parameters()) - sum(p.numel() for p in ucf.parameters()) == 257 * 1024 * 7
    )


# --- training mode: the level list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, batch, expected",
    [
        ("ucf101-192", 4, [(4, 8, 24, 24), (4, 4, 48, 48), (4, 2, 96, 96), (4, 1, 192, 192)]),
        ("ucf101-192-bsr", 8, [(8, 8, 24, 24), (4, 4, 48, 48), (2, 2, 96, 96), (1, 1, 192, 192)]),
        ("faceforensics-256", 8, [(8, 8, 32, 32), (4, 4, 64, 64), (2, 2, 128, 128), (1, 1, 256, 256)]),
        ("batch-only", 8, [(8, 8, 24, 24), (4, 8, 48, 48), (2, 8, 96, 96), (1, 8, 192, 192)]),
        ("no-subsampling", 2, [(2, 8, 24, 24), (2, 8, 48, 48), (2, 8, 96, 96), (2, 8, 192, 192)]),
        ("small-64", 4, [(4, 8, 8, 8), (4, 4, 16, 16), (4, 2, 32, 32), (4, 1, 64, 64)]),
    ],
)
def test_training_levels_match_level_shapes(tiny_cfg, preset, batch, expected):
    """Real forwards of tiny-width models (8 frames at level 1) agree with ``level_shapes`` and §1.5."""
    cfg = tiny_cfg(preset=preset, batch=batch)
    gen = build_generator(cfg).train()
    levels = gen(gen.make_z(batch), rng=_rng())
    assert isinstance(levels, list) and len(levels) == 4
    assert _video_shapes(levels) == expected == level_shapes(cfg)
    assert all(v.abs().max() <= 1 for v in levels)  # tanh range


def test_crop_factors_shapes(tiny_cfg):
    cfg = tiny_cfg("model.crop_factors=[2, 1, 2]")
    gen = build_generator(cfg).train()
    levels = gen(gen.make_z(4), rng=_rng())
    assert (
        _video_shapes(levels)
        == level_shapes(cfg)
        == [(4, 8, 8, 8), (4, 4, 8, 8), (4, 2, 16, 16), (4, 1, 16, 16)]
    )


class _Recorder:
    """Forward hooks that keep the inputs of chosen modules."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.inputs: dict[str, torch.Tensor] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        for name, module in modules.items():
            module.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def hook(module, args, output):
            self.inputs[name] = args[0].detach()
            self.outputs[name] = output.detach()

        return hook


def _record_offsets(monkeypatch) -> list[int]:
    """The offsets the ``rng=`` path draws, in order."""
    offsets: list[int] = []
    original = subsample_module.draw_frame_offsets

    def recording(frame_stride, n=None, generator=None):
        out = original(frame_stride, n, generator)
        offsets.append(out)
        return out

    monkeypatch.setattr(subsample_module, "draw_frame_offsets", recording)
    return offsets


@pytest.mark.parametrize("offset", [0, 1])
def test_render_before_subsampling_and_next_block_gets_subsampled_map(tiny_cfg, offset):
    """Level 1 is rendered from all frames; block 4 consumes h[::s_n, b::s_t] of block 3's output."""
    cfg = tiny_cfg("model.batch_strides=[2, 1, 1]", batch=4)
    gen = build_generator(cfg).train()
    rec = _Recorder({"block3": gen.blocks[2], "block4": gen.blocks[3], "render1": gen.renderers[0]})
    gen(gen.make_z(4), draws=[LayerDraw(offset), LayerDraw(0), LayerDraw(1)])
    h3 = rec.outputs["block3"]  # (N·T, C, H, W) = (4·8, ...)
    assert torch.equal(rec.inputs["render1"], h3)
    h5 = h3.view(4, 8, *h3.shape[1:])  # (N, T, C, H, W)
    expected = h5[::2, offset::2].reshape(-1, *h3.shape[1:])
    assert torch.equal(rec.inputs["block4"], expected)


def test_avg_pooling_ablation_feeds_group_means(tiny_cfg):
    cfg = tiny_cfg(use_avg_pooling=True)
    gen = build_generator(cfg).train()
    rec = _Recorder({"block3": gen.blocks[2], "block4": gen.blocks[3]})
    levels = gen(gen.make_z(4), draws=cfg.model.layer_draws(4, np.random.default_rng(0)))
    h5 = rec.outputs["block3"].view(4, 8, *rec.outputs["block3"].shape[1:])
    expected = (h5[:, 0::2] + h5[:, 1::2]) / 2
    torch.testing.assert_close(rec.inputs["block4"], expected.reshape(-1, *h5.shape[2:]))
    assert _video_shapes(levels) == level_shapes(cfg)


def test_training_forward_is_deterministic_and_rng_drives_the_offsets(tiny_cfg, monkeypatch):
    gen = build_generator(tiny_cfg()).train()
    offsets = _record_offsets(monkeypatch)
    z = gen.make_z(4, _rng(11))
    assert torch.equal(z, gen.make_z(4, _rng(11)))
    first = gen(z, rng=_rng(5))
    offsets_first = list(offsets)
    second = gen(z, rng=_rng(5))
    assert offsets[3:] == offsets_first
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    # the same offsets passed as draws give the same levels: both paths run one subsampling rule
    from_draws = gen(z, draws=[LayerDraw(o) for o in offsets_first])
    assert all(torch.equal(a, b) for a, b in zip(first, from_draws))
    # another first offset changes level 2 only from there on
    flipped = gen(z, draws=[LayerDraw(1 - offsets_first[0]), *map(LayerDraw, offsets_first[1:])])
    assert torch.equal(first[0], flipped[0])  # level 1 has no randomness
    assert not torch.allclose(first[1], flipped[1])


def test_crop_draws_pick_the_window(tiny_cfg):
    """A shared crop origin (y0, x0) keeps that window of the abstract map for the whole batch."""
    cfg = tiny_cfg("model.crop_factors=[2, 1, 1]")
    gen = build_generator(cfg).train()
    rec = _Recorder({"block3": gen.blocks[2], "block4": gen.blocks[3]})
    gen(gen.make_z(4), draws=[LayerDraw(1, (2, 3)), LayerDraw(0), LayerDraw(0)])
    h5 = rec.outputs["block3"].view(4, 8, *rec.outputs["block3"].shape[1:])  # (N, T, C, 8, 8)
    expected = h5[:, 1::2, :, 2:6, 3:7]
    assert torch.equal(rec.inputs["block4"], expected.reshape(-1, *expected.shape[2:]))


def test_training_forward_with_draws_is_one_graph(tiny_cfg):
    """Issue 13 §3: with pre-drawn draws G's training forward compiles without a graph break."""
    cfg = tiny_cfg(
        n_frames=4,
        frame_strides=[2, 2],
        batch_strides=[1, 2],
        crop_factors=[2, 1],
        render_level=3,
        n_classes=2,
    )
    gen = build_generator(cfg).train()
    draws = cfg.model.layer_draws(4, np.random.default_rng(0))
    explanation = torch._dynamo.explain(gen)(gen.make_z(4), torch.tensor([0, 1, 1, 0]), draws=draws)
    torch._dynamo.reset()
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons


class _HostTraffic(TorchDispatchMode):
    """Counts ops that read a value back to the host (``.item()``, ``bool(t)``, ``.tolist()``), copy a
    tensor between devices or dtypes (``.to``), or build a tensor from host data (``torch.tensor``)."""

    OPS = {
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.is_nonzero.default,
        torch.ops.aten._to_copy.default,
        torch.ops.aten.lift_fresh.default,
        torch.ops.aten.lift_fresh_copy.default,
    }

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func in self.OPS or func._overloadpacket is torch.ops.aten.item
        return func(*args, **(kwargs or {}))


def test_no_host_traffic_in_training_with_draws_and_in_eval(tiny_cfg):
    cfg = tiny_cfg(crop_factors=[2, 1, 1], n_classes=2)
    gen = build_generator(cfg).train()
    z, y = gen.make_z(4), torch.tensor([0, 1, 1, 0])
    draws = cfg.model.layer_draws(4, np.random.default_rng(0))
    with _HostTraffic() as traffic:
        gen(z, y, draws=draws)
        gen.eval()(z, y)
    assert traffic.count == 0
    with _HostTraffic() as traffic:  # the older path reads its torch-drawn offsets back: the counter works
        gen.train()(z, y, rng=_rng())
    assert traffic.count > 0


# --- eval mode ------------------------------------------------------------------------------------------


def test_eval_renders_every_level_and_any_length(tiny_cfg):
    gen = build_generator(tiny_cfg(n_frames=16)).eval()
    z = gen.make_z(2)
    with torch.no_grad():
        for level, size in zip(range(1, 5), (8, 16, 32, 64)):
            out = gen(z, render_level=level)
            assert isinstance(out, torch.Tensor) and out.shape == (2, 3, 16, size, size)
        long = gen(z, n_frames=32)
    assert long.shape == (2, 3, 32, 64, 64)
    with pytest.raises(ValueError, match="render_level"):
        gen(z, render_level=5)


def test_eval_192_levels(tiny_cfg):
    gen = build_generator(tiny_cfg(preset="ucf101-192")).eval()
    with torch.no_grad():
        sizes = [gen(gen.make_z(1), render_level=level).shape for level in range(1, 5)]
    assert sizes == [(1, 3, 8, s, s) for s in (24, 48, 96, 192)]


def test_eval_is_causal_in_time(tiny_cfg):
    """The ConvLSTM is causal and later layers act per frame: a longer video starts with the shorter one."""
    gen = build_generator(tiny_cfg(n_frames=16))
    for _ in range(2):  # give BN non-trivial running statistics
        gen.train()(gen.make_z(4), rng=_rng())
    gen.eval()
    z = gen.make_z(2)
    with torch.no_grad():
        short = gen(z, n_frames=16)
        long = gen(z, n_frames=32)
    torch.testing.assert_close(long[:, :, :16], short, rtol=0, atol=1e-6)
    assert not torch.allclose(long[:, :, 16:], long[:, :, :16])


def test_eval_uses_running_stats_and_leaves_them_alone(tiny_cfg):
    gen = build_generator(tiny_cfg())
    gen.train()(gen.make_z(4), rng=_rng())
    bn = gen.blocks[0].bn1
    assert bn.num_batches_tracked == 1 and bn.running_mean.abs().sum() > 0
    stats = {k: v.clone() for k, v in gen.state_dict().items()}
    gen.eval()
    z = gen.make_z(4)
    with torch.no_grad():
        batch = gen(z)
        single = gen(z[2:3])
    # eval output of one sample does not depend on the rest of the batch
    torch.testing.assert_close(single, batch[2:3], rtol=0, atol=1e-5)
    assert all(torch.equal(v, gen.state_dict()[k]) for k, v in stats.items())


def test_training_bn_updates_with_momentum_0_1_and_unbiased_variance(tiny_cfg):
    gen = build_generator(tiny_cfg()).train()
    rec = _Recorder({"block1": gen.blocks[0]})
    gen(gen.make_z(4), rng=_rng())
    x = rec.inputs["block1"]  # (N·T, C, t, t): frames folded into the batch
    assert x.shape == (4 * 8, 8, 1, 1)
    bn = gen.blocks[0].bn1
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)
    torch.testing.assert_close(bn.running_var, 0.9 + 0.1 * var)


def test_bn_settings(tiny_cfg):
    gen = build_generator(tiny_cfg())
    bns = [m for m in gen.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 2 * 6 + 4
    for bn in bns:
        assert bn.eps == 2e-5 and bn.momentum == 0.1 and bn.track_running_stats
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


# --- ConvLSTM -------------------------------------------------------------------------------------------


def _reference_step(cell: ConvLSTMCell, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
    """One step written out with the official gate order i, f, o, g."""
    hid = cell.hidden_channels
    wx, bx, wh = cell.w_x.weight, cell.w_x.bias, cell.w_h.weight
    out = []
    for k in range(4):  # gate k's slice of the 4·C channels
        sl = slice(k * hid, (k + 1) * hid)
        out.append(F.conv2d(x, wx[sl], bx[sl], padding=1) + F.conv2d(h, wh[sl], None, padding=1))
    i, f, o, g = torch.sigmoid(out[0]), torch.sigmoid(out[1]), torch.sigmoid(out[2]), torch.tanh(out[3])
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new


def test_clstm_forget_bias_initialises_only_the_f_gate():
    assert torch.all(ConvLSTMCell(3, 4).w_x.bias == 0)  # official: zero bias, no forget-gate offset
    bias = ConvLSTMCell(3, 4, forget_bias=1.0).w_x.bias  # (4·C,) in gate order i, f, o, g
    assert bias.tolist() == [0.0] * 4 + [1.0] * 4 + [0.0] * 8


def test_clstm_cell_matches_hand_written_step():
    cell = ConvLSTMCell(3, 4).double()
    assert cell.w_h.bias is None and cell.w_x.bias is not None
    with torch.no_grad():
        cell.w_x.bias.normal_()
    x, h, c = (torch.randn(2, ch, 5, 5, dtype=torch.float64) for ch in (3, 4, 4))
    h_new, c_new = cell(x, (h, c))
    h_ref, c_ref = _reference_step(cell, x, h, c)
    torch.testing.assert_close(h_new, h_ref)
    torch.testing.assert_close(c_new, c_ref)
    # a None input is exactly an all-zeros input (only the bias of w_x remains)
    zeros = torch.zeros_like(x)
    for a, b in zip(cell(None, (h, c)), _reference_step(cell, zeros, h, c)):
        torch.testing.assert_close(a, b)


def test_clstm_unroll_matches_reference_loop():
    clstm = ConvLSTM(4, n_layers=2).double()
    with torch.no_grad():
        for cell in clstm:
            cell.w_x.bias.normal_()
    x0 = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    out = clstm(x0, n_steps=5)
    states = [(torch.zeros_like(x0), torch.zeros_like(x0)) for _ in range(2)]
    kept = []
    for t in range(5):
        inp = x0 if t == 0 else torch.zeros_like(x0)  # fc(z) at t = 0, zeros afterwards
        for k, cell in enumerate(clstm):
            states[k] = _reference_step(cell, inp, *states[k])
            inp = states[k][0]
        kept.append(inp)
    assert out.shape == (2, 5, 4, 3, 3)
    torch.testing.assert_close(out, torch.stack(kept, dim=1))


def test_z_enters_only_at_t0():
    """Zeroing w_x's weights kills z's influence at every frame: it only ever multiplies fc(z) at t = 0."""
    clstm = ConvLSTM(4).double()
    x0, x1 = (torch.randn(1, 4, 3, 3, dtype=torch.float64) for _ in range(2))
    assert not torch.allclose(clstm(x0, 6), clstm(x1, 6))
    with torch.no_grad():
        clstm[0].w_x.weight.zero_()
    torch.testing.assert_close(clstm(x0, 6), clstm(x1, 6), rtol=0, atol=0)


# --- blocks against hand-written references ------------------------------------------------------------


def _bn_train(x: torch.Tensor, eps: float = 2e-5) -> torch.Tensor:
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _nearest2(x: torch.Tensor) -> torch.Tensor:
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def test_up_block_matches_hand_written():
    block = UpBlock(4, 3).double().train()
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    h = F.conv2d(_nearest2(_bn_train(x).relu()), block.conv1.weight, block.conv1.bias, padding=1)
    h = F.conv2d(_bn_train(h).relu(), block.conv2.weight, block.conv2.bias, padding=1)
    sc = F.conv2d(_nearest2(x), block.shortcut.weight, block.shortcut.bias)
    out = block(x)
    assert out.shape == (5, 3, 6, 6)
    torch.testing.assert_close(out, h + sc)


def _bilinear2(x: torch.Tensor) -> torch.Tensor:
    """×2 bilinear with half-pixel centres by hand: each output is 3/4 of its nearest input and 1/4 of the
    next one along each axis, the border repeated."""

    def along(x: torch.Tensor, dim: int) -> torch.Tensor:
        n = x.shape[dim]
        before = torch.cat([x.narrow(dim, 0, 1), x.narrow(dim, 0, n - 1)], dim)  # x[i − 1], clamped
        after = torch.cat([x.narrow(dim, 1, n - 1), x.narrow(dim, n - 1, 1)], dim)  # x[i + 1], clamped
        even, odd = 0.75 * x + 0.25 * before, 0.75 * x + 0.25 * after  # outputs 2i and 2i + 1
        return torch.stack([even, odd], dim + 1).flatten(dim, dim + 1)

    return along(along(x, 2), 3)


def test_bilinear_up_block_matches_hand_written():
    block = UpBlock(4, 3, upsample="bilinear").double().train()
    x = torch.randn(5, 4, 3, 3, dtype=torch.float64)
    h = F.conv2d(_bilinear2(_bn_train(x).relu()), block.conv1.weight, block.conv1.bias, padding=1)
    h = F.conv2d(_bn_train(h).relu(), block.conv2.weight, block.conv2.bias, padding=1)
    sc = F.conv2d(_bilinear2(x), block.shortcut.weight, block.shortcut.bias)
    torch.testing.assert_close(block(x), h + sc)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_cpu_upsampling_gives_the_contiguous_kernels_bits(mode):
    """The CPU route through the channels-last kernel changes no bit, forward or backward, and hands back
    a contiguous map (the run histories in the README were trained before it)."""
    x = torch.randn(12, 32, 16, 16)  # (B, C, H, W), a demo-64 level-2 map
    grad = torch.randn(12, 32, 32, 32)
    ours, ref = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = generator_module._upsample(ours, mode)
    expected = F.interpolate(ref, scale_factor=2, mode=mode)
    out.backward(grad)
    expected.backward(grad)
    assert out.is_contiguous() and torch.equal(out, expected)
    assert torch.equal(ours.grad, ref.grad)


def test_generator_passes_its_upsampling_to_every_up_block():
    gen = build_generator(load_config("demo-64"))  # the preset's bilinear
    assert [block.upsample for block in gen.blocks] == ["bilinear"] * len(gen.blocks)
    nearest = build_generator(load_config("demo-64", overrides=["model.upsample=nearest"]))
    assert {block.upsample for block in nearest.blocks} == {"nearest"}
    assert {block.upsample for block in build_generator(load_config("small-64")).blocks} == {"nearest"}


def test_renderer_matches_hand_written():
    render = Renderer(4, 3).double().train()
    x = torch.randn(5, 4, 6, 6, dtype=torch.float64)
    expected = torch.tanh(F.conv2d(_bn_train(x).relu(), render.conv.weight, render.conv.bias, padding=1))
    torch.testing.assert_close(render(x), expected)


# --- initialisation (reference §8 item 10) -------------------------------------------------------------


def test_initialisation():
    gen = Generator(z_dim=256, t_size=1, ch=8, clstm_ch=64)
    for name, module in gen.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
            assert torch.count_nonzero(module.bias) == 0, name
    # LeCunNormal: N(0, 1/fan_in) for fc, both CLSTM convs and the render convs
    lecun = [gen.fc.weight, gen.clstm[0].w_x.weight, gen.clstm[0].w_h.weight]
    lecun += [Renderer(128, 3).conv.weight]
    for weight in lecun:
        fan_in = weight[0].numel()
        assert weight.std().item() == pytest.approx(1 / math.sqrt(fan_in), rel=0.05)
        assert abs(weight.mean().item()) < 4 / math.sqrt(fan_in * weight.numel())
    assert gen.fc.weight.shape == (64, 256)
    # GlorotUniform(√2) for the 3×3 block convs, GlorotUniform(1) for the 1×1 shortcuts
    for block in gen.blocks:
        for conv, gain in ((block.conv1, math.sqrt(2)), (block.conv2, math.sqrt(2)), (block.shortcut, 1.0)):
            w = conv.weight
            bound = gain * math.sqrt(6 / (w.shape[1] * w[0, 0].numel() + w.shape[0] * w[0, 0].numel()))
            assert w.abs().max().item() <= bound * (1 + 1e-6)
            if w.numel() >= 1000:
                assert w.abs().max().item() >= 0.99 * bound


# --- class-conditional BN --------------------------------------------------------------------------------


def test_class_conditional_bn(tiny_cfg):
    gen = build_generator(tiny_cfg(n_classes=3))
    assert any(isinstance(m, ConditionalBatchNorm2d) for m in gen.modules())
    with torch.no_grad():
        for m in gen.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gamma.weight.uniform_(0.5, 1.5)
                m.beta.weight.normal_()
    z = gen.make_z(4)
    a = gen.train()(z, torch.tensor([0, 0, 0, 0]), rng=_rng())
    b = gen.train()(z, torch.tensor([0, 1, 2, 1]), rng=_rng())
    assert [v.shape for v in a] == [v.shape for v in b]
    assert not torch.allclose(a[3], b[3])
    gen.eval()
    with torch.no_grad():
        e0 = gen(z[:1], torch.tensor([0]))
        e1 = gen(z[:1], torch.tensor([1]))
    assert not torch.allclose(e0, e1)
    with pytest.raises(ValueError, match="labels"):
        gen(z)
    unconditional = build_generator(tiny_cfg())
    with pytest.raises(ValueError, match="labels"):
        unconditional(z, torch.zeros(4, dtype=torch.long))


def test_conditional_bn_is_per_sample_affine():
    bn = ConditionalBatchNorm2d(2, 3, eps=2e-5).double()
    with torch.no_grad():
        bn.gamma.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
        bn.beta.weight.copy_(torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]))
    x = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    y = torch.tensor([2, 0, 1, 2])
    normed = _bn_train(x)
    expected = normed * bn.gamma.weight[y][:, :, None, None] + bn.beta.weight[y][:, :, None, None]
    torch.testing.assert_close(bn(x, y), expected)


def test_bad_z_shape_raises(tiny_cfg):
    gen = build_generator(tiny_cfg())
    with pytest.raises(ValueError, match="z must be"):
        gen(torch.zeros(2, 3))
