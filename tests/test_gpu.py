"""CUDA-only checks (``pytest -m gpu``; off by default, run by ``benchmarks/gpu_check.sh``).

Each compares the GPU against the CPU or against fp32 on tiny models, so they take seconds on a GPU.
"""

from __future__ import annotations

import pytest
import torch

from tganv2.bench import step as bench_step
from tganv2.bench.devicecheck import compare_steps, initial_state, step_inputs, step_on
from tganv2.config import build_discriminator, config_to_dict, level_shapes
from tganv2.training.device import configure_backends
from tganv2.training.step import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture
def ieee_fp32():
    """TF32 off for the comparisons in fp32; training's set-up restored afterwards."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    configure_backends("cuda")


def test_cuda_fp32_step_equals_the_cpu_float64_step(tiny_cfg, ieee_fp32):
    cfg = tiny_cfg("model.batch_strides=[2,2,2]", batch=8)
    state = initial_state(cfg)
    clips, z = step_inputs(cfg)
    reference = step_on(cfg, "cpu", torch.float64, state, clips, z)
    result = compare_steps(step_on(cfg, "cuda", torch.float32, state, clips, z), reference)
    assert result["passed"], result


def test_bf16_discriminator_tracks_fp32_on_cuda(tiny_cfg, ieee_fp32):
    """cuDNN's bf16 3D convolutions: D's scores under autocast within 5% of fp32 (relative L2)."""
    cfg = tiny_cfg(d_ch=8, batch=4)
    discriminator = build_discriminator(cfg).cuda()
    clips, _ = step_inputs(cfg)  # (4, 3, 8, 64, 64)
    levels = [clips.cuda()[:n, :, :t, :h, :w] for n, t, h, w in level_shapes(cfg)]
    with torch.no_grad():
        fp32 = discriminator(levels)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = discriminator(levels).float()
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape
    assert float((bf16 - fp32).norm() / fp32.norm()) < 0.05


def test_bf16_training_steps_stay_finite_on_cuda(tiny_cfg):
    cfg = tiny_cfg(precision="bf16", batch=4)
    configure_backends("cuda")
    trainer = Trainer(cfg, "cuda")
    clips, _ = step_inputs(cfg)
    clips = clips.cuda()
    for _ in range(5):
        trainer.step(lambda: (clips, None))
    for module in (trainer.generator, trainer.discriminator):
        assert all(torch.isfinite(p).all() for p in module.parameters())


def test_bench_step_child_runs_training_set_up_on_cuda(tiny_cfg):
    """The child of ``bench step`` autotunes cuDNN and runs fp32 as TF32, and MFU uses the TF32 rate."""
    spec = {
        "variant": "preset",
        "config": config_to_dict(tiny_cfg(batch=4)),
        "device": "cuda",
        "warmup": 1,
        "iters": 1,
        "matmul_rates": True,
        "matmul_size": 2048,
    }
    run = bench_step.run_in_child(spec, timeout=300)
    assert "error" not in run, run.get("error")
    assert run["backends"] == {
        "cuda_matmul_allow_tf32": True,
        "cudnn_allow_tf32": True,
        "cudnn_benchmark": True,
    }
    assert run["matmul"]["fp32_matmul_mode"] == "tf32"
    assert run["peak_allocated_gb"] > 0
