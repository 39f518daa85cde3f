"""The GPU check's step comparison (``tganv2.bench.devicecheck``), checked on the CPU: fp32 against float64.

On the CPU, fp32 must meet the tolerance the GPU check applies to CUDA fp32, and a step that differs (a
different subsampling draw) must fail it, so the check can tell a wrong step from rounding.
"""

from __future__ import annotations

import torch

from tganv2.bench.devicecheck import TOLERANCE, compare_steps, initial_state, step_inputs, step_on


def test_fp32_step_matches_float64_and_a_different_step_does_not(tiny_cfg):
    cfg = tiny_cfg("model.batch_strides=[2,2,2]", batch=8)  # batch reduction: per-level batches 8/4/2/1
    state = initial_state(cfg)
    clips, z = step_inputs(cfg)
    reference = step_on(cfg, "cpu", torch.float64, state, clips, z)
    assert all(v.dtype == torch.float64 for v in reference["grads"].values())
    fp32 = compare_steps(step_on(cfg, "cpu", torch.float32, state, clips, z), reference)
    assert fp32["passed"], fp32
    assert max(fp32["loss_rel_error"].values()) < TOLERANCE["loss"] / 10
    assert max(n["gradient_rel_l2"] for n in fp32["networks"].values()) < TOLERANCE["gradient"] / 10
    # the same weights and inputs but other subsampling draws (seed 1): far outside the tolerance
    other = compare_steps(step_on(cfg, "cpu", torch.float32, state, clips, z, seed=1), reference)
    assert not other["passed"]
    assert max(n["gradient_rel_l2"] for n in other["networks"].values()) > 100 * TOLERANCE["gradient"]
