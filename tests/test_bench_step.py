"""``tganv2 bench step``: the child-process step runner, the largest-batch search and the MFU arithmetic.

No timing is asserted: the child runs of the search are replaced by fakes with known peak memory, and the
real child runs use tiny models and check only what they report about themselves (their model, their
set-up). The FLOPs behind MFU are checked against an independent count: ``FlopCounterMode`` over one real
``Trainer.step``.
"""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import counted_step_gflops, tiny_args
from tganv2.bench import step as bench_step
from tganv2.cli import main
from tganv2.config import build_discriminator, build_generator, config_to_dict, load_config, variant_config


def _tiny(batch: int = 4, variant: str = "preset"):
    return bench_step.step_config(load_config("small-64", overrides=tiny_args()), variant, batch, "fp32")


def _spec(batch: int = 4, **fields) -> dict:
    spec = {
        "variant": "preset",
        "config": config_to_dict(_tiny(batch)),
        "device": "cpu",
        "warmup": 1,
        "iters": 2,
        "threads": 1,
    }
    spec.update(fields)
    return spec


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("variant", ["preset", "no-subsampling"])
def test_report_step_flops_equal_a_counted_real_step(monkeypatch, variant):
    monkeypatch.setattr(bench_step, "measured_rates", lambda device, threads=0, size=0: _FAKE_RATES)
    monkeypatch.setattr(bench_step, "run_in_child", lambda spec, timeout=None: {**spec, "median_step_s": 0.5})
    report = bench_step.step_report(_tiny(), batch=4, device="cpu", variants=(variant,))
    counted = counted_step_gflops(_tiny(4, variant))
    assert report["variants"][variant]["train_step_gflops"] == pytest.approx(counted, rel=0.01)


_FAKE_RATES = {  # TFLOP/s
    "bf16_matmul_tflops": 2.0,
    "fp32_matmul_tflops": 1.0,
    "fp32_matmul_mode": "ieee",
    "matmul_threads": 1,
}


def test_flop_utilisation_is_step_flops_over_time_over_the_rate_of_the_precision(monkeypatch):
    monkeypatch.setattr(bench_step, "measured_rates", lambda device, threads=0, size=0: _FAKE_RATES)
    monkeypatch.setattr(bench_step, "run_in_child", lambda spec, timeout=None: {**spec, "median_step_s": 0.5})
    report = bench_step.step_report(_tiny(), precision="fp32", batch=4, device="cpu")
    assert list(report["variants"]) == ["preset", "no-subsampling"]
    for run in report["variants"].values():
        flops = run["train_step_gflops"]
        assert run["iterations_per_s"] == 2.0 and run["clips_per_s"] == 8.0
        assert run["mfu"] == pytest.approx(flops / 0.5 / 1e3 / 1.0)  # fp32: the fp32 rate
        assert run["mfu_vs_bf16_matmul"] == pytest.approx(flops / 0.5 / 1e3 / 2.0)
        assert run["mfu_vs_fp32_matmul"] == pytest.approx(flops / 0.5 / 1e3 / 1.0)
    # without subsampling the step is bigger; this tiny model: L2-L4 run 8 frames instead of 4/2/1
    flops = {name: run["train_step_gflops"] for name, run in report["variants"].items()}
    assert flops["no-subsampling"] > 1.5 * flops["preset"]
    bf16 = bench_step.step_report(_tiny(), precision="bf16", batch=4, device="cpu", variants=("preset",))
    run = bf16["variants"]["preset"]
    assert run["mfu"] == pytest.approx(run["train_step_gflops"] / 0.5 / 1e3 / 2.0)  # bf16: the bf16 rate


@pytest.mark.parametrize(
    "precision, bf16_rate, printed, hidden",
    [
        ("fp32", 2.0, "25.0% of the fp32 matmul rate (12.5% of the faster bf16 rate)", None),
        ("fp32", 0.001, "25.0% of the fp32 matmul rate", "of the faster"),  # emulated bf16: 25000 %
        ("bf16", 0.5, "50.0% of the bf16 matmul rate (25.0% of the faster fp32 rate)", None),
    ],
)
def test_printed_mfu_names_the_other_precision_only_where_its_rate_is_faster(
    capsys, precision, bf16_rate, printed, hidden
):
    from tganv2.bench.cli import _print_step

    rates = {**_FAKE_RATES, "bf16_matmul_tflops": bf16_rate}  # fp32 1 TFLOP/s
    achieved = 0.25  # TFLOP/s
    run = {
        "iterations_per_s": 2.0,
        "median_step_s": 0.5,
        "peak_memory_gb": 0.1,
        "train_step_gflops": achieved * 0.5 * 1e3,
        "mfu": achieved / (bf16_rate if precision == "bf16" else 1.0),
        "mfu_vs_bf16_matmul": achieved / bf16_rate,
        "mfu_vs_fp32_matmul": achieved / 1.0,
    }
    report = {
        **rates,
        "preset": "small-64",
        "device": "cpu",
        "device_name": "cpu",
        "date": "2026-12-07",
        "precision": precision,
        "compile": False,
        "batch": 4,
        "repeats": 1,
        "iters": 2,
        "warmup": 1,
        "variants": {"preset": run},
    }
    _print_step(report)
    out = capsys.readouterr().out
    assert printed in out
    assert hidden is None or hidden not in out


def test_cpu_search_picks_the_largest_batch_predicted_within_budget(monkeypatch):
    """Peak RSS = 1 GB + 0.1 GB per sample: a 4 GB budget allows 30 samples, so 16 from a batch of 4."""
    calls = []

    def fake_child(spec, timeout=None):
        batch = spec["config"]["train"]["batch"]
        calls.append(batch)
        return {**spec, "batch": batch, "out_of_memory": False, "peak_rss_gb": 1.0 + 0.1 * batch}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"peak_memory_gb": 0.4, "rss_before_step_gb": 1.0, "peak_rss_gb": 1.4}
    best, trials = bench_step.largest_batch(_spec(), measured, max_batch=256, memory_budget_gb=4.0)
    assert best == 16 and calls == [16]
    # the cap wins over the budget
    calls.clear()
    assert bench_step.largest_batch(_spec(), measured, max_batch=8, memory_budget_gb=4.0)[0] == 8


def test_cpu_search_halves_when_the_verification_step_exceeds_the_budget(monkeypatch):
    def fake_child(spec, timeout=None):  # memory grows faster than the linear prediction
        batch = spec["config"]["train"]["batch"]
        return {**spec, "batch": batch, "out_of_memory": False, "peak_rss_gb": 1.0 + 0.01 * batch**2}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"peak_memory_gb": 0.16, "rss_before_step_gb": 1.0, "peak_rss_gb": 1.16}
    best, trials = bench_step.largest_batch(_spec(), measured, max_batch=256, memory_budget_gb=4.0)
    # predicted 1 + 0.04·b ≤ 4 → 64; verified: 64 → 41.96 GB, 32 → 11.24 GB, 16 → 3.56 GB fits
    assert [t["batch"] for t in trials] == [64, 32, 16] and best == 16


def test_cuda_search_doubles_until_out_of_memory(monkeypatch):
    def fake_child(spec, timeout=None):
        batch = spec["config"]["train"]["batch"]
        return {**spec, "batch": batch, "out_of_memory": batch > 32}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    measured = {"out_of_memory": False}
    best, trials = bench_step.largest_batch(_spec(device="cuda"), measured, 1024, 0.0)
    assert best == 32 and [t["batch"] for t in trials] == [8, 16, 32, 64]


def test_rounds_merge_all_timed_steps_and_keep_the_worst_peak():
    runs = [
        {"step_seconds": [1.0, 5.0], "step_cpu_seconds": [2.0, 2.0], "peak_memory_gb": 0.5},
        {"step_seconds": [2.0, 3.0], "step_cpu_seconds": [2.0, 4.0], "peak_memory_gb": 0.7},
    ]
    merged = bench_step._merge_rounds(runs)
    assert merged["median_step_s"] == 2.5 and merged["median_step_cpu_s"] == 2.0
    assert merged["peak_memory_gb"] == 0.7 and len(merged["rounds"]) == 2


# --- the CLI on the small presets, with a --config file (issue 11 §2, §3) ---------------------------------


@pytest.mark.parametrize("preset, n_layers", [("small-64", 3), ("demo-64", 2)])
def test_cli_child_runs_the_parents_model_with_the_training_set_up(tmp_path, capsys, preset, n_layers):
    """A YAML file reaches the child: its G and D are the parent's (the preset alone would differ), and the
    ablation is derived from the preset's own number of layers (demo-64 has 2)."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"n_frames": 8, "z_dim": 8, "ch": 3, "clstm_ch": 8, "d_ch": 2}})
    )
    argv = ["bench", "step", "--preset", preset, "--config", str(config), "--variants", "no-subsampling"]
    argv += ["--batch", "2", "--iters", "1", "--warmup", "0", "--threads", "1", "--matmul-size", "256"]
    assert main([*argv, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    run = report["variants"]["no-subsampling"]
    assert "error" not in run, run.get("error")
    expected = variant_config(load_config(preset, [config]), "no-subsampling")
    assert expected.model.frame_strides == [1] * n_layers and expected.model.n_levels == n_layers + 1
    assert run["generator_parameters"] == _parameters(build_generator(expected))
    assert run["discriminator_parameters"] == _parameters(build_discriminator(expected))
    assert run["generator_parameters"] != _parameters(build_generator(load_config(preset)))
    assert report["config"]["model"]["ch"] == 3 and len(run["step_seconds"]) == 1
    assert run["peak_rss_gb"] >= run["rss_before_step_gb"] > 0
    # training's set-up ran in the child (torch's own default for TF32 matmuls is off), with the thread
    # count that the matmul rate was measured at
    training_set_up = {"cuda_matmul_allow_tf32": True, "cudnn_allow_tf32": True, "cudnn_benchmark": False}
    assert run["backends"] == report["backends"] == training_set_up  # cuDNN autotuning on CUDA only
    assert run["threads"] == report["matmul_threads"] == 1
    assert report["fp32_matmul_mode"] == "ieee"  # TF32 is CUDA only


def test_cost_peak_memory_children_get_the_resolved_config_of_each_variant(tmp_path, capsys, monkeypatch):
    """``bench cost --peak-memory``: each child is sent the config file's model, with its ablation."""
    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump({"model": {"n_frames": 8, "z_dim": 8, "ch": 3, "clstm_ch": 8, "d_ch": 2}})
    )
    sent = {}

    def fake_child(spec, timeout=None):
        sent[spec["variant"]] = spec["config"]
        return {"peak_memory_gb": 0.1, "generator_parameters": 1}

    monkeypatch.setattr(bench_step, "run_in_child", fake_child)
    argv = ["bench", "cost", "--preset", "small-64", "--config", str(config), "--batch", "4"]
    assert main([*argv, "--peak-memory", "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    cfg = load_config("small-64", [config])
    assert list(sent) == ["preset", "no-subsampling"]  # small-64 is frame-only: measured once
    for variant, sent_config in sent.items():
        assert sent_config == config_to_dict(bench_step.step_config(cfg, variant, 4, "fp32")), variant
    # batch 4 does not divide by the total batch stride 8 of 3 layers: those variants say so, alone
    peak = report["peak_memory"]["variants"]
    assert "divisible by the total batch stride 8" in peak["frame+batch"]["error"]
    assert "error" in peak["batch-only"] and peak["preset"]["peak_memory_gb"] == 0.1
    assert peak["frame-only"] == {**peak["preset"], "same_model_as": "preset"}


@pytest.mark.parametrize(
    "probe_s, sizes_timed", [(1e-4, [256, 2048]), (2e-3, [256, 1024]), (0.5, [256, 256])]
)
def test_matmul_rate_shrinks_the_product_a_slow_dtype_cannot_finish_within_the_budget(
    monkeypatch, probe_s, sizes_timed
):
    """bf16 emulated on a CPU (about 1 GFLOP/s) takes a minute per 2048² product: the 256² probe's time
    predicts each size's (∝ size³), the largest within 1 s is timed, and the rate is that product's."""
    timed: list[int] = []

    def fake_seconds(device, dtype, size, repeats):
        timed.append(size)
        return probe_s * (size / 256) ** 3

    monkeypatch.setattr(bench_step, "_best_product_seconds", fake_seconds)
    rate, size = bench_step.matmul_rate_and_size("cpu", torch.bfloat16, size=2048, budget_s=1.0)
    assert timed == sizes_timed
    assert size == sizes_timed[-1]
    assert rate == pytest.approx(2 * 256**3 / probe_s / 1e12)  # the same rate at every size here


def test_matmul_rate_times_a_size_below_the_probe_as_asked(monkeypatch):
    timed: list[int] = []
    monkeypatch.setattr(bench_step, "_best_product_seconds", lambda d, t, size, r: timed.append(size) or 1.0)
    assert bench_step.matmul_rate_and_size("cpu", torch.float32, size=64)[1] == 64
    assert timed == [64]  # no probe: nothing to shrink
