"""``tganv2 bench step``: the child-process step runner, the largest-batch search and the MFU arithmetic.

No timing is asserted: the child runs of the search are replaced by fakes with known peak memory, and the
real child run uses a tiny model and checks only what it reports about itself.
"""

from __future__ import annotations

import statistics

import pytest

from tganv2.bench import step as bench_step
from tganv2.bench.cost import train_step_gflops
from tganv2.config import ABLATIONS, apply_overrides, load_preset

TINY = ["model.n_frames=8", "model.z_dim=8", "model.ch=2", "model.clstm_ch=8", "model.d_ch=2"]


def _spec(**fields) -> dict:
    spec = {
        "preset": "small-64",
        "variant": "tganv2",
        "batch": 4,
        "precision": "fp32",
        "compile": False,
        "device": "cpu",
        "warmup": 1,
        "iters": 2,
        "overrides": TINY,
    }
    spec.update(fields)
    return spec


def test_child_process_runs_real_trainer_steps():
    result = bench_step.run_in_child(_spec(), timeout=300)
    assert "error" not in result, result.get("error")
    assert len(result["step_seconds"]) == 2
    assert result["median_step_s"] == statistics.median(result["step_seconds"])
    assert result["peak_rss_gb"] >= result["rss_before_step_gb"] > 0
    assert result["peak_memory_gb"] == pytest.approx(result["peak_rss_gb"] - result["rss_before_step_gb"])


def test_cpu_search_picks_the_largest_batch_predicted_within_budget(monkeypatch):
    """Peak RSS = 1 GB + 0.1 GB per sample: a 4 GB budget allows 30 samples, so 16 from a batch of 4."""
    calls = []

    def fake_child(spec, timeout=None):
        calls.append(spec["batch"])
        return {**spec, "out_of_memory": False, "peak_rss_gb": 1.0 + 0.1 * spec["batch"]}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"peak_memory_gb": 0.4, "rss_before_step_gb": 1.0, "peak_rss_gb": 1.4}
    best, trials = bench_step.largest_batch(_spec(), measured, max_batch=256, memory_budget_gb=4.0)
    assert best == 16 and calls == [16]
    # the cap wins over the budget
    calls.clear()
    assert bench_step.largest_batch(_spec(), measured, max_batch=8, memory_budget_gb=4.0)[0] == 8


def test_cpu_search_halves_when_the_verification_step_exceeds_the_budget(monkeypatch):
    def fake_child(spec, timeout=None):  # memory grows faster than the linear prediction
        return {**spec, "out_of_memory": False, "peak_rss_gb": 1.0 + 0.01 * spec["batch"] ** 2}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"peak_memory_gb": 0.16, "rss_before_step_gb": 1.0, "peak_rss_gb": 1.16}
    best, trials = bench_step.largest_batch(_spec(), measured, max_batch=256, memory_budget_gb=4.0)
    # predicted 1 + 0.04·b ≤ 4 → 64; verified: 64 → 41.96 GB, 32 → 11.24 GB, 16 → 3.56 GB fits
    assert [t["batch"] for t in trials] == [64, 32, 16] and best == 16


def test_cuda_search_doubles_until_out_of_memory(monkeypatch):
    def fake_child(spec, timeout=None):
        return {**spec, "out_of_memory": spec["batch"] > 32}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"out_of_memory": False}
    best, trials = bench_step.largest_batch(_spec(device="cuda"), measured, 1024, 0.0)
    assert best == 32 and [t["batch"] for t in trials] == [8, 16, 32, 64]


def test_report_flop_utilisation_is_step_flops_over_time_over_matmul_rate(monkeypatch):
    def fake_rate(device, dtype, **_):  # TFLOP/s
        return 2.0 if "bfloat" in str(dtype) else 1.0

    def fake_child(spec, timeout=None):
        return {**spec, "median_step_s": 0.5, "peak_memory_gb": 1.0}

    monkeypatch.setattr(bench_step, "matmul_tflops", fake_rate)
    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    report = bench_step.step_report(preset="small-64", batch=4, device="cpu", overrides=TINY)
    for variant in ("tganv2", "no-subsampling"):
        cfg = apply_overrides(load_preset("small-64", TINY), {**ABLATIONS.get(variant, {}), "train.batch": 4})
        flops = sum(train_step_gflops(cfg, 4).values())
        run = report["variants"][variant]
        assert run["train_step_gflops"] == pytest.approx(flops)
        assert run["iterations_per_s"] == 2.0
        assert run["mfu_vs_bf16_matmul"] == pytest.approx(flops / 0.5 / 1e3 / 2.0)
        assert run["mfu_vs_fp32_matmul"] == pytest.approx(flops / 0.5 / 1e3 / 1.0)
    flops = {name: run["train_step_gflops"] for name, run in report["variants"].items()}
    assert flops["no-subsampling"] > flops["tganv2"]


def test_rounds_merge_all_timed_steps_and_keep_the_worst_peak():
    runs = [
        {"step_seconds": [1.0, 5.0], "step_cpu_seconds": [2.0, 2.0], "peak_memory_gb": 0.5},
        {"step_seconds": [2.0, 3.0], "step_cpu_seconds": [2.0, 4.0], "peak_memory_gb": 0.7},
    ]
    merged = bench_step._merge_rounds(runs)
    assert merged["median_step_s"] == 2.5 and merged["median_step_cpu_s"] == 2.0
    assert merged["peak_memory_gb"] == 0.7 and len(merged["rounds"]) == 2
