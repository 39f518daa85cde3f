"""The official update rule (G first, D reuses the fakes, R1), Chainer's Adam, the device-side divergence
guard, no host syncs, resumable streams, and DDP equivalence (2 gloo ranks = 1 × 2B)."""

from __future__ import annotations

import copy
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import make_tiny_cfg
from tganv2.config import apply_overrides
from tganv2.losses import discriminator_loss, full_precision, generator_loss, r1_penalty
from tganv2.training.distributed import convert_sync_batchnorm
from tganv2.training.step import Trainer, adam_step, make_optimizer, real_levels


def _fixed_inputs(cfg, n: int):
    g = torch.Generator().manual_seed(123)
    clips = (
        torch.rand(n, 3, cfg.model.n_frames, cfg.model.resolution, cfg.model.resolution, generator=g) * 2 - 1
    )
    z = torch.rand(n, cfg.model.z_dim, generator=g) * 2 - 1
    return clips, z


def _recording(trainer: Trainer) -> tuple[dict, dict]:
    """Record the draws the trainer makes and the gradients its two optimisers apply."""
    draws: dict = {"real": [], "fake": []}
    grads: dict = {"g": {}, "d": {}}
    original = trainer._draws

    def recorded(batch, per_sample):
        out = original(batch, per_sample)
        draws["real" if per_sample else "fake"].append(out)
        return out

    trainer._draws = recorded
    for key, opt, module in (
        ("g", trainer.opt_g, trainer.generator),
        ("d", trainer.opt_d, trainer.discriminator),
    ):

        def keep(optimizer, args, kwargs, key=key, module=module):
            grads[key] = {n: p.grad.detach().clone() for n, p in module.named_parameters()}

        opt.register_step_pre_hook(keep)
    return draws, grads


def _todays_step(G, D, cfg, clips, z, real_draws, fake_draws, lam):
    """Main's ``Trainer.step`` math before the rewrite (kept here as the reference), one iteration, fixed
    draws: D once on detached fakes, the G loss's image gradient pushed into G, then D loss + R1."""
    reals = [x.detach().requires_grad_(True) for x in real_levels(clips, cfg, real_draws)]
    fakes = G(z, None, draws=fake_draws)
    fake_inputs = [full_precision(f.detach()).requires_grad_(True) for f in fakes]
    real_scores = full_precision(D(reals, None))
    fake_scores = full_precision(D(fake_inputs, None))
    loss_gen = generator_loss(fake_scores)
    image_grads = torch.autograd.grad(loss_gen, fake_inputs, retain_graph=True)
    torch.autograd.backward(fakes, [g.to(f.dtype) for g, f in zip(image_grads, fakes)])
    g_grads = {n: p.grad.clone() for n, p in G.named_parameters()}
    loss_dis = discriminator_loss(real_scores, fake_scores)
    loss_gp = r1_penalty(real_scores, reals, lam)
    (loss_dis + loss_gp).backward(inputs=list(D.parameters()))
    d_grads = {n: p.grad.clone() for n, p in D.named_parameters()}
    losses = {"loss_gen": loss_gen.item(), "loss_dis": loss_dis.item(), "loss_gp": loss_gp.item()}
    return losses, g_grads, d_grads


def _chainer_adam(params: list[torch.Tensor], grads: list[torch.Tensor], moments: list, t: int, cfg) -> None:
    """Chainer 6's Adam written out: p -= α·√(1−β2^t)/(1−β1^t) · m/(√v + ε), ε outside the correction."""
    (b1, b2), eps, lr = cfg.train.betas, cfg.train.adam_eps, cfg.train.lr
    alpha_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
    for p, g, (m, v) in zip(params, grads, moments):
        m.mul_(b1).add_((1 - b1) * g)
        v.mul_(b2).add_((1 - b2) * g * g)
        p.sub_(alpha_t * m / (v.sqrt() + eps))


def _first_step_in_float64(cfg, lam: float):
    """One float64 ``Trainer.step`` of batch 4 and ``_todays_step`` with λ_sum ``lam`` on the same inputs
    and draws: (trainer, clips, its stats, its applied gradients, the initial (G, D), the reference)."""
    torch.manual_seed(0)
    trainer = Trainer(cfg, seed=5)
    trainer.generator.double()
    trainer.discriminator.double()
    G0, D0 = copy.deepcopy(trainer.generator), copy.deepcopy(trainer.discriminator)
    clips, z = (t.double() for t in _fixed_inputs(cfg, 4))
    trainer.sample_z = lambda n: z
    draws, grads = _recording(trainer)
    trainer.step(lambda: (clips, None))
    stats = trainer.read_stats()
    reference = _todays_step(copy.deepcopy(G0), copy.deepcopy(D0), cfg, clips, z, draws["real"][0],
                             draws["fake"][0], lam)  # fmt: skip
    return trainer, clips, stats, grads, (G0, D0), reference


@pytest.mark.parametrize(
    "dotted",
    [[], ["model.batch_strides=[1,2,2]", "model.crop_factors=[1,2,1]"], ["model.d_mbstd_group=2"]],
)
def test_step_equals_todays_step_in_float64(tiny_cfg, dotted):
    """The rewritten step's losses and gradients equal main's step math to 1e-10 (float64, same draws),
    and its update is Chainer's Adam on those gradients."""
    cfg = tiny_cfg(*dotted, batch=4)
    trainer, _, stats, grads, (G0, D0), (losses, g_grads, d_grads) = _first_step_in_float64(cfg, 0.5 * 32 / 4)
    for key, value in losses.items():
        assert stats[key] == pytest.approx(value, rel=1e-10, abs=1e-14), key
    assert stats["diverged"] == 0.0
    for ours, ref in ((grads["g"], g_grads), (grads["d"], d_grads)):
        assert ours.keys() == ref.keys()
        for name in ref:
            torch.testing.assert_close(ours[name], ref[name], rtol=1e-10, atol=1e-14, msg=name)
    for module, ref_module, ref_grads in (
        (trainer.generator, G0, g_grads),
        (trainer.discriminator, D0, d_grads),
    ):
        params = [p.detach() for p in ref_module.parameters()]
        moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
        _chainer_adam(params, [ref_grads[n] for n, _ in ref_module.named_parameters()], moments, 1, cfg)
        for (name, p), q in zip(module.named_parameters(), params):
            torch.testing.assert_close(p.detach(), q, rtol=1e-10, atol=1e-14, msg=name)


def test_lazy_r1_applies_k_lambda_on_every_kth_d_step_only(tiny_cfg):
    """``train.r1_every=3``: D step 1 is the official step with λ·3 (float64, same draws); steps 2 and 3
    carry no R1 at all; step 4 has it again."""
    cfg = tiny_cfg("train.r1_every=3", batch=4)
    trainer, clips, stats, grads, _, (losses, _, d_grads) = _first_step_in_float64(cfg, 3 * 0.5 * 32 / 4)
    assert stats["loss_gp"] == pytest.approx(losses["loss_gp"], rel=1e-10) and losses["loss_gp"] > 0
    for name, ref in d_grads.items():
        torch.testing.assert_close(grads["d"][name], ref, rtol=1e-10, atol=1e-14, msg=name)
    penalties = []
    for _ in range(3):
        trainer.step(lambda: (clips, None))
        penalties.append(trainer.read_stats()["loss_gp"])
    assert penalties[0] == penalties[1] == 0.0 and penalties[2] > 0


@pytest.mark.parametrize("betas", [(0.0, 0.9), (0.5, 0.99)])
def test_adam_is_chainers_by_default_and_torchs_as_an_option(tiny_cfg, betas):
    """float64, random parameters and gradients (some near 1e-7, where the conventions differ most):
    Chainer's update to 1e-12 relative at t = 1, 2, 10; ``adam_eps_convention=torch`` is torch.optim.Adam."""
    cfg = tiny_cfg(betas=betas, lr=1e-2)
    g = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (11,), (3, 2, 4)]
    start = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    steps = []
    for _ in range(10):
        step_grads = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
        step_grads[0][:3] *= 1e-7  # comparable to eps: where ε's place matters
        steps.append(step_grads)

    def run(cfg, optimizer_factory):
        module = torch.nn.ParameterList([torch.nn.Parameter(p.clone()) for p in start])
        opt = optimizer_factory(module)
        seen = {}
        for t, step_grads in enumerate(steps, start=1):
            for p, grad in zip(module, step_grads):
                p.grad = grad.clone()
            adam_step(opt, t, cfg)
            seen[t] = [p.detach().clone() for p in module]
        return seen

    ours = run(cfg, lambda m: make_optimizer(m, cfg))
    params = [p.clone() for p in start]
    moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    for t, step_grads in enumerate(steps, start=1):
        _chainer_adam(params, step_grads, moments, t, cfg)
        if t in (1, 2, 10):
            for p, q in zip(ours[t], params):
                torch.testing.assert_close(p, q, rtol=1e-12, atol=0)
    torch_cfg = apply_overrides(cfg, ["train.adam_eps_convention=torch"])
    torch_ours = run(torch_cfg, lambda m: make_optimizer(m, torch_cfg))
    plain = run(torch_cfg, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, betas=betas, eps=8e-8))
    for t in (1, 2, 10):
        for p, q in zip(torch_ours[t], plain[t]):
            torch.testing.assert_close(p, q, rtol=1e-12, atol=0)
    # the conventions really differ at t = 1 on the tiny gradients (torch's effective eps is √(1−β2)·ε)
    gap = (ours[1][0][:3] - torch_ours[1][0][:3]).abs().max().item()
    assert gap > 1e-2 * cfg.train.lr


@pytest.mark.parametrize(
    "iterations, decay_start, lr_dis, d_base_lr, expected",
    [
        (4, 0.0, 0.0, 2e-4, [0.75, 0.5, 0.25, 0.0]),  # official: linear from iteration 0, D at train.lr
        (8, 0.5, 3e-3, 3e-3, [1, 1, 1, 1, 0.75, 0.5, 0.25, 0.0]),  # full lr to iteration 4, then linear
    ],
)
def test_lr_holds_until_decay_start_then_decays_linearly_to_zero(
    tiny_cfg, iterations, decay_start, lr_dis, d_base_lr, expected
):
    overrides = {"train.lr": 2e-4, "train.lr_decay_start": decay_start, "train.lr_dis": lr_dis}
    cfg = apply_overrides(tiny_cfg(iterations=iterations), overrides)
    trainer = Trainer(cfg)
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    lrs, d_lrs = [], []
    for _ in range(iterations):
        trainer.step(lambda: (clips, None))
        lrs.append(trainer.read_stats()["lr"] / cfg.train.lr)
        d_lrs.append(trainer.opt_d.param_groups[0]["lr"] / d_base_lr)  # D: its own base, the same schedule
    assert lrs == pytest.approx(expected)
    assert d_lrs == pytest.approx(expected)


def test_statistics_are_means_over_the_window_since_the_last_read(tiny_cfg):
    cfg = tiny_cfg()
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    torch.manual_seed(0)
    one_by_one = Trainer(cfg, seed=1)
    torch.manual_seed(0)
    windowed = Trainer(cfg, seed=1)
    singles = []
    for _ in range(3):
        one_by_one.step(lambda: (clips, None))
        singles.append(one_by_one.read_stats())
        windowed.step(lambda: (clips, None))
    mean = windowed.read_stats()
    for key in ("loss_gen", "loss_dis", "loss_gp", "d_real", "d_fake"):
        assert mean[key] == pytest.approx(sum(s[key] for s in singles) / 3, rel=1e-6), key
    assert len({s["loss_dis"] for s in singles}) == 3  # three different values were averaged


class _HostSyncOps(TorchDispatchMode):
    """aten ops that read a device value on the host: scalar reads and device-to-host copies."""

    READS = {"_local_scalar_dense", "item", "is_nonzero", "equal"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in self.READS:
            self.found.append(name)
        elif name == "copy_" and args[1].device.type != "cpu" and args[0].device.type == "cpu":
            self.found.append("copy_ to host")
        elif name == "_to_copy" and args[0].device.type != "cpu":
            if torch.device(kwargs.get("device") or args[0].device).type == "cpu":
                self.found.append("_to_copy to host")
        return func(*args, **kwargs)


class _HostSyncCalls(TorchFunctionMode):
    """Tensor methods that hand a value to Python (seen before dispatch, so also on CPU tensors)."""

    NAMES = {"tolist", "cpu", "numpy", "item", "__bool__", "__int__", "__float__", "__index__"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.NAMES:
            self.found.append(name)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "dotted",
    [[], ["model.batch_strides=[1,2,2]", "model.crop_factors=[1,2,1]", "model.n_classes=3", "train.n_dis=2"]],
)
def test_an_ordinary_iteration_reads_nothing_back_to_the_host(tiny_cfg, dotted):
    cfg = tiny_cfg(*dotted)
    trainer = Trainer(cfg)
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    labels = torch.arange(cfg.train.batch) % 3 if cfg.model.n_classes else None
    trainer.step(lambda: (clips, labels))  # the first step creates Adam's state
    ops, calls = _HostSyncOps(), _HostSyncCalls()
    with ops, calls:
        trainer.step(lambda: (clips, labels))
    assert ops.found == [] and calls.found == []
    with ops, calls:  # the counters do see host reads
        stats = trainer.read_stats()
    assert "_local_scalar_dense" in ops.found or "tolist" in calls.found
    assert math.isfinite(stats["loss_dis"]) and stats["diverged"] == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_an_ordinary_cuda_iteration_never_synchronises(tiny_cfg):
    """On CUDA, torch's sync debug mode raises on any synchronising call inside the step."""
    cfg = tiny_cfg("model.batch_strides=[1,2,2]", "model.crop_factors=[1,2,1]")
    trainer = Trainer(cfg, "cuda")
    clips = _fixed_inputs(cfg, cfg.train.batch)[0].cuda()  # the batch's own copy is the data path's
    trainer.step(lambda: (clips, None))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        trainer.step(lambda: (clips, None))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    stats = trainer.read_stats()
    assert math.isfinite(stats["loss_dis"]) and stats["diverged"] == 0.0


def test_a_non_finite_gradient_skips_every_update_until_it_is_read(tiny_cfg):
    """The flag is set on the device; both Adams skip (weights and step counters unchanged) from then on."""
    cfg = tiny_cfg()
    trainer = Trainer(cfg)
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    trainer.step(lambda: (clips, None))
    first = next(trainer.discriminator.parameters())
    first.register_hook(lambda g: g * float("nan") if trainer.iteration == 1 else g)
    good_g = copy.deepcopy(trainer.generator.state_dict())
    good_d = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    trainer.step(lambda: (clips, None))  # iteration 2: NaN in one D gradient; G was already updated
    g_after_2 = copy.deepcopy(trainer.generator.state_dict())
    trainer.step(lambda: (clips, None))  # iteration 3: clean gradients, but the flag stays set
    for key, value in good_d.items():
        assert torch.equal(trainer.discriminator.state_dict()[key], value), key
    params_g = [k for k, _ in trainer.generator.named_parameters()]
    assert any(not torch.equal(good_g[k], g_after_2[k]) for k in params_g)  # G's update at 2 was clean
    assert all(torch.equal(g_after_2[k], trainer.generator.state_dict()[k]) for k in params_g)
    steps = {float(s["step"]) for s in trainer.opt_d.state.values()}
    assert steps == {1.0}
    stats = trainer.read_stats()
    assert stats["diverged"] == 1.0 and stats["diverged_at"] == 2
    assert trainer.check_healthy() == "a non-finite gradient or loss"


@pytest.mark.parametrize("dotted", [[], ["train.r1_every=3"]])
def test_resume_from_state_dict_is_bit_exact(tiny_cfg, dotted):
    """Every stream (z on the device, the fake and real numpy draws) and Adam's state travel in the state;
    lazy R1 keeps its rhythm (D steps 1 and 4 here) across the resume."""
    cfg = tiny_cfg("model.crop_factors=[1,2,1]", *dotted)
    clips, _ = _fixed_inputs(cfg, cfg.train.batch)
    straight = Trainer(cfg, seed=7)
    for _ in range(2):
        straight.step(lambda: (clips, None))
    state = copy.deepcopy(straight.state_dict())
    for _ in range(2):
        straight.step(lambda: (clips, None))
    resumed = Trainer(cfg, seed=99)  # other seeds: the state must override them
    resumed.load_state_dict(state)
    np.random.seed(0)  # the global RNGs are part of the state too
    for _ in range(2):
        resumed.step(lambda: (clips, None))
    assert resumed.iteration == straight.iteration == 4
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(resumed.generator.state_dict()[key], value), key
    for key, value in straight.discriminator.state_dict().items():
        assert torch.equal(resumed.discriminator.state_dict()[key], value), key


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
        trainer.step(lambda clips=clips: (clips, None))
        results[precision] = trainer.read_stats()
    for key in ("loss_gen", "loss_dis"):
        assert results["bf16"][key] == pytest.approx(results["fp32"][key], rel=0.02), key
    assert 0 < results["bf16"]["loss_gp"] == pytest.approx(results["fp32"]["loss_gp"], rel=0.1)


@pytest.mark.parametrize("n_classes", [0, 3])
def test_check_healthy_refuses_weights_that_cannot_be_saved(tiny_cfg, n_classes):
    """Good weights pass; a non-finite weight, or a generator that renders constant videos, does not."""
    cfg = tiny_cfg(n_classes=n_classes)
    trainer = Trainer(cfg)
    assert trainer.check_healthy() is None
    with torch.no_grad():
        renderer = trainer.generator.renderers[-1].conv
        saved = renderer.weight.clone(), renderer.bias.clone()
        renderer.weight.zero_()
        renderer.bias.fill_(0.5)  # every pixel tanh(0.5)
        assert trainer.check_healthy() == "a generator that renders constant videos"
        renderer.weight.copy_(saved[0])
        renderer.bias.copy_(saved[1])
        next(trainer.discriminator.parameters())[0].fill_(float("inf"))
    assert trainer.check_healthy() == "non-finite discriminator weights"
    assert trainer.generator.training  # the check's eval-mode render leaves G in training mode
