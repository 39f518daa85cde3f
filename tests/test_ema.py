"""EMA of the generator: the update formula on known weights, bit-exact resume, the snapshot round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import tiny_args
from tganv2.cli import main
from tganv2.config import ConfigError, build_generator
from tganv2.errors import WeightsError
from tganv2.snapshot import load_snapshot
from tganv2.training.ema import GeneratorEMA, ema_beta, make_ema

TINY = tiny_args(
    "data.synthetic_size=32",
    "train.log_every=1",
    "train.ema_half_life=16",  # 4 updates of 4 samples: β = 0.5^(1/4) once the ramp-up is over
    "train.ema_rampup=0.5",
)


def test_beta_follows_stylegan_half_life_and_rampup():
    assert ema_beta(80, 8, 10_000) == pytest.approx(0.5**0.1)  # no ramp-up left: 8 / 80
    assert ema_beta(80, 8, 0, rampup=0.05) == 0.0  # first update: the copy becomes G
    assert ema_beta(80, 8, 800, rampup=0.05) == pytest.approx(0.5 ** (8 / 40))  # min(80, 0.05 · 800)
    assert ema_beta(80, 8, 10_000, rampup=0.05) == pytest.approx(0.5**0.1)
    # H / B updates towards a fixed target halve the distance: the half-life is in samples
    assert ema_beta(80, 8, 10_000) ** 10 == pytest.approx(0.5)


def _fill(module: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.fill_(value)


def test_update_formula_on_known_weights(tiny_cfg):
    cfg = tiny_cfg()
    g = build_generator(cfg)
    _fill(g, 0.0)
    ema = GeneratorEMA(g, build_generator(cfg), half_life=8, batch=4, rampup=0.0)  # β = 0.5^(1/2)
    beta = 0.5**0.5
    expected = 0.0
    buffers_before = {k: v.clone() for k, v in ema.model.named_buffers()}
    for iteration, target in enumerate([1.0, 3.0, -2.0], start=1):
        _fill(g, target)
        ema.update(g, iteration)
        expected = beta * expected + (1 - beta) * target  # θ_ema ← β θ_ema + (1 − β) θ
        for name, p in ema.model.named_parameters():
            torch.testing.assert_close(p, torch.full_like(p, expected), rtol=0, atol=1e-6, msg=name)
    assert expected == pytest.approx((1 - beta) * (beta**2 * 1 + beta * 3 - 2))  # = 0.18198, unrolled
    for name, value in ema.model.named_buffers():  # the statistics are recomputed, not averaged
        assert torch.equal(value, buffers_before[name]), name
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())


def test_batchnorm_statistics_are_recomputed_for_the_ema_weights(tiny_cfg):
    """After ``averaged()``, each BN's running mean/var are the batch statistics of the copy's own
    inference-path activations for the fixed recompute z (one batch here, so no averaging over batches)."""
    from tganv2.training import ema as ema_module

    cfg = tiny_cfg()
    g = build_generator(cfg)
    ema = GeneratorEMA(
        g, build_generator(cfg), half_life=8, batch=4, recompute_batch=ema_module.RECOMPUTE_VIDEOS
    )
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.3 * torch.randn_like(p))
    ema.update(g, 5)  # the copy's weights now differ from G's and from its start
    model = ema.averaged()
    assert not model.training
    captured = {}
    probes = {"blocks.0.bn1": model.blocks[0].bn1, "renderers.3.bn": model.renderers[3].bn}
    hooks = [
        m.register_forward_hook(lambda m, i, o, k=k: captured.__setitem__(k, i[0])) for k, m in probes.items()
    ]
    z = model.make_z(
        ema_module.RECOMPUTE_VIDEOS, generator=torch.Generator().manual_seed(ema_module.RECOMPUTE_SEED)
    )
    with torch.no_grad():
        model(z, render_level=4)  # eval mode: the inference path through every block and the last renderer
    for h in hooks:
        h.remove()
    # The first BN sees exactly the recompute's input. Later ones see inputs that upstream BNs normalised
    # with the batch's biased variance while recomputing, and with the stored unbiased one now: a factor
    # n/(n−1) (n = 256 frames at the 1×1 grid of blocks.0): about 0.3% at every later BN, under 1% here.
    for (key, bn), rtol in zip(probes.items(), (1e-4, 1e-2)):
        x = captured[key]  # (N·T, C, H, W)
        torch.testing.assert_close(bn.running_mean, x.mean(dim=(0, 2, 3)), rtol=rtol, atol=1e-5, msg=key)
        torch.testing.assert_close(bn.running_var, x.var(dim=(0, 2, 3)), rtol=rtol, atol=1e-5, msg=key)
    # those statistics differ from G's own running statistics
    assert not torch.allclose(model.blocks[0].bn1.running_var, g.blocks[0].bn1.running_var)
    # cached until the weights move again
    assert ema.averaged() is model and torch.equal(
        model.blocks[0].bn1.running_mean, probes["blocks.0.bn1"].running_mean
    )


def test_rampup_makes_the_first_update_a_copy(tiny_cfg):
    cfg = tiny_cfg("train.ema_half_life=1000", "train.ema_rampup=0.05")
    g = build_generator(cfg)
    ema = make_ema(cfg, g)
    _fill(g, 2.5)
    ema.update(g, 1)
    assert torch.equal(ema.state_dict()["fc.weight"], g.fc.weight.detach())
    assert make_ema(tiny_cfg(), g) is None  # ema_half_life = 0: off (the official behaviour)
    with pytest.raises(ConfigError, match="train.ema_half_life"):
        tiny_cfg("train.ema_half_life=-1")


def _train(out, *extra: str) -> None:
    args = ["train", "--preset", "small-64", "--out", str(out), "--no-progress", "--threads", "1"]
    assert (
        main([*args, "--iterations", "4", "--checkpoint-every", "2", "--sample-every", "100", *extra, *TINY])
        == 0
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same 4-iteration EMA run straight, and as 2 iterations + a resume (rerun of the command)."""
    root = tmp_path_factory.mktemp("ema")
    _train(root / "straight")
    _train(root / "resumed", "--stop-after", "2")
    assert not (root / "resumed" / "checkpoints" / "ckpt-0000004.pt").exists()
    _train(root / "resumed")
    return root


def test_resume_with_ema_is_bit_exact(runs):
    a = torch.load(runs / "straight" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    b = torch.load(runs / "resumed" / "checkpoints" / "ckpt-0000004.pt", weights_only=True)
    for key in ("generator", "generator_ema"):
        assert a[key].keys() == b[key].keys()
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    # the copy really averages: it is not G, and it moved away from its start
    start = torch.load(runs / "straight" / "checkpoints" / "ckpt-0000002.pt", weights_only=True)
    name = "blocks.0.conv1.weight"
    assert not torch.equal(a["generator_ema"][name], a["generator"][name])
    assert not torch.equal(a["generator_ema"][name], start["generator_ema"][name])
    assert not torch.equal(
        a["generator_ema"]["blocks.0.bn1.running_var"], a["generator"]["blocks.0.bn1.running_var"]
    )


def test_snapshot_round_trip_holds_the_ema_copy(runs, tmp_path):
    run = runs / "straight"
    ckpt = run / "checkpoints" / "ckpt-0000004.pt"
    state = torch.load(ckpt, weights_only=True)
    snapshot_path = run / "generator.safetensors"
    with safe_open(str(snapshot_path), "pt") as f:
        assert f.metadata()["weights"] == "ema" and f.metadata()["iteration"] == "4"
    snapshot = load_file(str(snapshot_path))
    for name, tensor in state["generator_ema"].items():
        assert torch.equal(snapshot[name], tensor), name

    loaded = load_snapshot(snapshot_path)
    assert loaded.weights == "ema" and loaded.config.train.ema_half_life == 16
    from_ckpt = load_snapshot(ckpt)  # default: the EMA copy where there is one
    raw = load_snapshot(ckpt, weights="raw")
    assert from_ckpt.weights == "ema" and raw.weights == "raw"
    z = loaded.model.make_z(2, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded.model(z), from_ckpt.model(z))
        assert not torch.equal(loaded.model(z), raw.model(z))
    with pytest.raises(WeightsError, match="holds the ema weights only"):
        load_snapshot(snapshot_path, weights="raw")

    # `generate --weights raw` on the run directory reads the latest checkpoint; default = the snapshot
    for weights, reference in (("raw", raw.model), (None, loaded.model)):
        out = tmp_path / f"{weights}.npz"
        extra = ["--weights", weights] if weights else []
        assert (
            main(["generate", "--checkpoint", str(run), "--out", str(out), "--n", "2", "--seed", "4", *extra])
            == 0
        )
        with torch.no_grad():
            z = reference.make_z(2, torch.Generator().manual_seed(4))
            expected = ((reference(z).clamp(-1, 1) * 128 + 128).clamp(0, 255).to(torch.uint8)).numpy()
        with np.load(out, allow_pickle=False) as data:
            np.testing.assert_array_equal(data["videos"], expected)
