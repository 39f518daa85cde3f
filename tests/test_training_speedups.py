"""The step's speed paths give today's numbers: uint8 batches converted on the device, channels-last
weights, and one D pass over reals and fakes together (all in float64, against the plain step)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tganv2.data import to_float
from tganv2.training.layout import to_channels_last
from tganv2.training.step import Trainer


def _uint8_clips(cfg, n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    shape = (n, 3, cfg.model.n_frames, cfg.model.resolution, cfg.model.resolution)
    return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)


def _record_updates(trainer: Trainer) -> dict:
    """The gradients each optimiser applies, keyed ``G.name`` / ``D.name``."""
    record: dict = {}
    models = (("G", trainer.generator, trainer.opt_g), ("D", trainer.discriminator, trainer.opt_d))
    for prefix, module, opt in models:

        def keep(optimizer, args, kwargs, prefix=prefix, module=module):
            for name, p in module.named_parameters():
                record[f"{prefix}.{name}"] = p.grad.detach().clone()

        opt.register_step_pre_hook(keep)
    return record


def _float64_step(cfg, clips, labels=None, prepare=None, seed=3) -> tuple[dict, dict, Trainer]:
    torch.manual_seed(0)
    trainer = Trainer(cfg, seed=seed)
    trainer.generator.double()
    trainer.discriminator.double()
    if prepare is not None:
        prepare(trainer)
    z = torch.rand(
        clips.shape[0], cfg.model.z_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    z = z * 2 - 1
    trainer.sample_z = lambda n: z
    grads = _record_updates(trainer)
    trainer.step(lambda: (clips, labels))
    stats = trainer.read_stats()
    return stats, grads, trainer


def test_uint8_batches_are_converted_by_the_step(tiny_cfg):
    """A uint8 batch from the loader gives the same step as the same clips converted beforehand."""
    cfg = tiny_cfg(batch=4)
    clips = _uint8_clips(cfg, 4)
    runs = []
    for batch in (clips, to_float(clips)):
        torch.manual_seed(0)
        trainer = Trainer(cfg, seed=3)
        trainer.step(lambda batch=batch: (batch, None))
        stats = trainer.read_stats()
        runs.append((stats, [p.detach().clone() for p in trainer.discriminator.parameters()]))
    (stats_u8, d_u8), (stats_f, d_f) = runs
    assert stats_u8 == stats_f
    assert all(torch.equal(a, b) for a, b in zip(d_u8, d_f))


def test_channels_last_helper_converts_conv_weights_only_when_enabled(tiny_cfg):
    trainer = Trainer(tiny_cfg())
    G, D = trainer.generator, trainer.discriminator
    before = [p.data_ptr() for p in G.parameters()]
    to_channels_last(G, False)
    assert [p.data_ptr() for p in G.parameters()] == before  # disabled (the CPU default): untouched
    params = list(G.parameters()) + list(D.parameters())
    to_channels_last(G, True)
    to_channels_last(D, True)
    assert params == list(G.parameters()) + list(D.parameters())  # the same Parameter objects
    conv2d = [m.weight for m in G.modules() if isinstance(m, nn.Conv2d)]
    conv3d = [m.weight for m in D.modules() if isinstance(m, nn.Conv3d)]
    assert conv2d and conv3d
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in conv2d)
    assert all(w.is_contiguous(memory_format=torch.channels_last_3d) for w in conv3d)
    assert not all(w.is_contiguous() for w in conv2d + conv3d)  # some layouts did change


def test_channels_last_step_equals_the_contiguous_step(tiny_cfg):
    cfg = tiny_cfg(batch=4)
    clips = to_float(_uint8_clips(cfg, 4)).double()

    def channels_last(trainer):
        to_channels_last(trainer.generator, True)
        to_channels_last(trainer.discriminator, True)

    stats, grads, _ = _float64_step(cfg, clips)
    stats_cl, grads_cl, trainer = _float64_step(cfg, clips, prepare=channels_last)
    conv = trainer.discriminator.levels[0].blocks[1].conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    for key in ("loss_gen", "loss_dis", "loss_gp"):
        assert stats_cl[key] == pytest.approx(stats[key], rel=0, abs=1e-10), key
    for name, grad in grads.items():
        torch.testing.assert_close(grads_cl[name], grad, rtol=0, atol=1e-10, msg=name)


def test_moments_written_contiguous_resume_beside_their_own_channels_last_weights(tiny_cfg):
    """A checkpoint whose weights and Adam moments are contiguous (a CPU run) resumes into channels-last
    weights (as on CUDA): each moment takes its weight's strides, so the fused Adam pairs them element by
    element as before, and the next step equals the contiguous run's."""
    cfg = tiny_cfg(batch=4)
    clips = to_float(_uint8_clips(cfg, 4)).double()
    _, _, plain = _float64_step(cfg, clips)  # one step: the moments exist
    state = copy.deepcopy(plain.state_dict())
    assert state["opt_d"]["state"][0]["exp_avg"].is_contiguous()
    resumed = Trainer(cfg, seed=3)
    resumed.generator.double()
    resumed.discriminator.double()
    to_channels_last(resumed.generator, True)
    to_channels_last(resumed.discriminator, True)
    resumed.load_state_dict(state)
    resumed.sample_z = plain.sample_z
    resumed_weight = resumed.discriminator.levels[0].blocks[1].conv1.weight
    assert not resumed_weight.is_contiguous()  # channels-last, unlike the checkpoint's
    moments = resumed.opt_d.state[resumed_weight]
    assert moments["exp_avg"].stride() == moments["exp_avg_sq"].stride() == resumed_weight.stride()
    for trainer in (plain, resumed):
        trainer.step(lambda: (clips, None))
    for module in ("generator", "discriminator"):
        ours, theirs = getattr(resumed, module).parameters(), getattr(plain, module).parameters()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=module)


@pytest.mark.parametrize(("preset", "n_classes"), [("small-64", 0), ("ucf101-192-bsr", 3)])
def test_one_joint_d_pass_equals_two_passes(tiny_cfg, preset, n_classes):
    """Same losses and the same G and D gradients (R1 included) from one pass over reals + fakes."""
    from conftest import make_tiny_cfg

    cfgs = [make_tiny_cfg(preset=preset, batch=8, n_classes=n_classes, d_joint_pass=j) for j in (False, True)]
    clips = to_float(_uint8_clips(cfgs[0], 8)).double()
    labels = torch.arange(8) % 3 if n_classes else None
    (stats, grads, _), (stats_joint, grads_joint, _) = (_float64_step(c, clips, labels) for c in cfgs)
    for key in ("loss_gen", "loss_dis", "loss_gp", "d_real", "d_fake"):
        assert stats_joint[key] == pytest.approx(stats[key], rel=0, abs=1e-10), key
    assert stats["loss_gp"] > 0
    assert set(grads_joint) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_joint[name], grad, rtol=0, atol=1e-10, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_step_from_a_pinned_uint8_batch_matches_the_cpu_step(tiny_cfg, monkeypatch):
    """CUDA: channels-last weights, a pinned uint8 batch copied non_blocking; the CPU losses (no TF32)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    cfg = tiny_cfg(batch=4)
    clips = _uint8_clips(cfg, 4)
    results = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        trainer = Trainer(cfg, device, seed=3)
        batch = clips.pin_memory() if device == "cuda" else clips
        results[device] = (trainer.step(lambda batch=batch: (batch, None)), trainer)
    cuda_trainer = results["cuda"][1]
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last_3d)
        for m in cuda_trainer.discriminator.modules()
        if isinstance(m, nn.Conv3d)
    )
    assert all(
        m.weight.is_contiguous(memory_format=torch.channels_last)
        for m in cuda_trainer.generator.modules()
        if isinstance(m, nn.Conv2d)
    )
    for key in ("loss_gen", "loss_dis", "loss_gp"):
        assert results["cuda"][0][key] == pytest.approx(results["cpu"][0][key], rel=1e-4, abs=1e-6), key
