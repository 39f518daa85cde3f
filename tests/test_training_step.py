"""The official update rule (G first, D reuses the fakes, R1) and DDP equivalence (2 gloo ranks = 1 × 2B)."""

from __future__ import annotations

import copy
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import make_tiny_cfg
from tganv2.losses import discriminator_loss, generator_loss, r1_penalty
from tganv2.training.distributed import convert_sync_batchnorm
from tganv2.training.step import Trainer, real_levels


def _fixed_inputs(cfg, n: int):
    g = torch.Generator().manual_seed(123)
    clips = (
        torch.rand(n, 3, cfg.model.n_frames, cfg.model.resolution, cfg.model.resolution, generator=g) * 2 - 1
    )
    z = torch.rand(n, cfg.model.z_dim, generator=g) * 2 - 1
    return clips, z


def test_step_matches_a_hand_written_official_iteration(tiny_cfg):
    """G is updated first from D(fake); D then uses those same fake scores, plus R1 on the reals."""
    cfg = tiny_cfg(batch=4)
    torch.manual_seed(0)
    trainer = Trainer(cfg, seed=5)
    G0, D0 = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    rng_fake0, rng_real0 = trainer.rng_fake.get_state(), trainer.rng_real.get_state()
    clips, _ = _fixed_inputs(cfg, 4)
    stats = trainer.step(lambda: (clips, None))

    # reference: the same iteration written out plainly, with a second D forward for the D loss
    rng_fake = torch.Generator().set_state(rng_fake0)
    rng_real = torch.Generator().set_state(rng_real0)
    lr = cfg.train.lr
    opt_g = torch.optim.Adam(G0.parameters(), lr=lr, betas=(0.0, 0.9), eps=8e-8)
    opt_d = torch.optim.Adam(D0.parameters(), lr=lr, betas=(0.0, 0.9), eps=8e-8)
    reals = [x.requires_grad_(True) for x in real_levels(clips, cfg, rng_real)]
    z = G0.make_z(4, generator=rng_fake)
    fakes = G0(z, rng=rng_fake)
    loss_gen = generator_loss(D0(fakes))
    opt_g.zero_grad()
    loss_gen.backward()
    opt_g.step()
    real_scores = D0(reals)
    fake_scores = D0([f.detach() for f in fakes])  # D's weights are unchanged, so equal to the reused scores
    lam = 0.5 * 32 / 4
    loss_dis = discriminator_loss(real_scores, fake_scores)
    loss_gp = r1_penalty(real_scores, reals, lam)
    opt_d.zero_grad()
    (loss_dis + loss_gp).backward()
    opt_d.step()

    assert stats["loss_gen"] == pytest.approx(loss_gen.item(), rel=1e-6)
    assert stats["loss_dis"] == pytest.approx(loss_dis.item(), rel=1e-6)
    assert stats["loss_gp"] == pytest.approx(loss_gp.item(), rel=1e-5)
    for (name, p), q in zip(trainer.generator.named_parameters(), G0.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)
    for (name, p), q in zip(trainer.discriminator.named_parameters(), D0.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


def test_lr_decays_linearly_to_zero(tiny_cfg):
    cfg = tiny_cfg(iterations=4)
    trainer = Trainer(cfg)
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    lrs = [trainer.step(lambda: (clips, None))["lr"] for _ in range(4)]
    assert lrs == pytest.approx([0.75 * cfg.train.lr, 0.5 * cfg.train.lr, 0.25 * cfg.train.lr, 0.0])


def _record_g_update(trainer: Trainer) -> dict:
    """Wrap G's optimiser step to keep the (all-reduced) gradients it applies: the G update."""
    record: dict = {}

    def keep_gradients(optimizer, args, kwargs):
        for name, p in trainer.generator.named_parameters():
            record[name] = p.grad.detach().clone()

    trainer.opt_g.register_step_pre_hook(keep_gradients)
    return record


def _ddp_worker(rank: int, world: int, init_file: str, out_file: str, preset: str, B: int) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = make_tiny_cfg("model.t_size=1", preset=preset, batch=B)
        clips, z = (t.double() for t in _fixed_inputs(cfg, 2 * B))
        torch.manual_seed(0)
        trainer = Trainer(cfg, generator=convert_sync_batchnorm(_build(cfg), torch.device("cpu")), seed=0)
        _to_float64(trainer)
        part = slice(rank * B, (rank + 1) * B)
        trainer.sample_z = lambda n: z[part]
        grads = _record_g_update(trainer)
        trainer.step(lambda: (clips[part], None))
        if rank == 0:
            buffers = {k: v.clone() for k, v in trainer.generator.named_buffers()}
            torch.save({"grads": grads, "buffers": buffers}, out_file)
    finally:
        dist.destroy_process_group()


def _to_float64(trainer: Trainer) -> None:
    """G and D in float64, in place (the optimisers keep their parameter objects)."""
    trainer.generator.double()
    trainer.discriminator.double()


def _build(cfg):
    from tganv2.config import build_generator

    return build_generator(cfg)


@pytest.mark.parametrize(("preset", "B"), [("small-64", 4), ("ucf101-192-bsr", 8)])
def test_two_gloo_ranks_equal_one_process_with_twice_the_batch(tmp_path, preset, B):
    """Same G update within 1e-5 (in fact 1e-9): SyncBatchNorm, averaged gradients, same z and data order.

    The update is compared as the gradient G's optimiser applies (and the BN statistics): Adam's first
    step is lr·g/(|g| + eps), which turns float rounding of near-zero gradients into ±lr flips. Both runs
    are in float64: in fp32, the CPU's kernels sum in an order that depends on the batch size. With
    AVX-512 oneDNN kernels the fp32 runs differ by up to 7e-5, against 1e-6 with AVX2 kernels; that is
    rounding, not the algorithm under test.
    """
    out_file = str(tmp_path / "ddp.pt")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), out_file, preset, B), nprocs=2, join=True)
    ddp = torch.load(out_file, weights_only=True)

    cfg = make_tiny_cfg("model.t_size=1", preset=preset, batch=2 * B)  # tiny widths, 64 px
    clips, z = (t.double() for t in _fixed_inputs(cfg, 2 * B))
    torch.manual_seed(0)
    single = Trainer(cfg, seed=0)
    _to_float64(single)
    single.sample_z = lambda n: z
    grads = _record_g_update(single)
    single.step(lambda: (clips, None))
    assert set(grads) == set(ddp["grads"])
    for name, grad in grads.items():
        torch.testing.assert_close(ddp["grads"][name], grad, rtol=0, atol=1e-9, msg=name)
    assert max(g.abs().max().item() for g in grads.values()) > 1e-3  # a real, non-trivial update
    for name, buffer in single.generator.named_buffers():  # SyncBatchNorm: global batch statistics
        torch.testing.assert_close(ddp["buffers"][name].to(buffer.dtype), buffer, rtol=0, atol=1e-9, msg=name)


def test_bf16_autocast_step_tracks_fp32(tiny_cfg):
    """bf16 forward passes give the fp32 losses to bf16 accuracy; R1 stays finite and positive."""
    results = {}
    for precision in ("fp32", "bf16"):
        cfg = tiny_cfg(batch=4, precision=precision)
        torch.manual_seed(0)
        trainer = Trainer(cfg, seed=3)
        clips, _ = _fixed_inputs(cfg, 4)
        results[precision] = trainer.step(lambda clips=clips: (clips, None))
    for key in ("loss_gen", "loss_dis"):
        assert results["bf16"][key] == pytest.approx(results["fp32"][key], rel=0.02), key
    assert 0 < results["bf16"]["loss_gp"] == pytest.approx(results["fp32"]["loss_gp"], rel=0.1)
