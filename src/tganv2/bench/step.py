"""Wall-clock speed and peak memory of real training steps (``tganv2 bench step``).

Every measurement runs ``Trainer.step`` (the official iteration: G first, D reusing the fakes, R1 on the
reals) in a **child process**, one per (variant, batch), so that peak memory is that run's alone:

* CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps;
* CPU: the child's peak resident set (``VmHWM``), reported with the resident set just before the first
  step (model, optimisers and the pre-rendered batches), whose difference is the step's own peak.

Real batches come from the built-in synthetic dataset, rendered once before timing and cycled, so the
figures are the training step alone (no data loading). Warm-up steps come first (they include
``torch.compile`` of G's forward when asked, through ``train.compile``; D is never compiled because R1
differentiates it twice); the reported time is the median of the timed steps. On a shared machine the
median is at the mercy of other processes' load, so the fastest step (``min_step_s``) and the process CPU
seconds are kept too, with the 1-minute load average around each run.

Model FLOP utilisation = training-step FLOPs (the meta-device count of ``cost.train_step_gflops`` at the
same batch) / median step time / the device's measured dense matmul rate (bf16 and fp32).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import torch

from ..config import ABLATIONS, Config, apply_overrides, load_preset

__all__ = [
    "matmul_tflops",
    "child_step_run",
    "run_in_child",
    "largest_batch",
    "step_report",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: str | torch.device, dtype: torch.dtype, size: int = 0, repeats: int = 5) -> float:
    """Measured dense matmul rate (TFLOP/s) of ``size × size`` operands; the best of ``repeats`` runs."""
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    (a @ b).sum().item()  # warm-up (and lazy init)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def _rss_gb(field: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in GB; NaN where unavailable."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return float("nan")


def _variant_config(
    preset: str,
    variant: str,
    batch: int,
    precision: str,
    overrides: list[str] | None = None,
    compile: bool = False,
) -> Config:
    """The preset, then the user's dotted overrides, then the ablation, batch, precision and compile."""
    cfg = load_preset(preset, list(overrides or []))
    extra = dict(ABLATIONS.get(variant, {}))
    extra.update({"train.batch": batch, "train.precision": precision, "train.compile": compile})
    return apply_overrides(cfg, extra)


def child_step_run(spec: dict) -> dict:
    """Build a Trainer for ``spec`` and time its steps (runs inside the child process)."""
    from ..data.base import to_float
    from ..data.synthetic import SyntheticVideoDataset
    from ..training.step import Trainer

    torch.manual_seed(0)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    cfg = _variant_config(
        spec["preset"],
        spec["variant"],
        spec["batch"],
        spec["precision"],
        spec.get("overrides"),
        spec.get("compile", False),
    )
    m = cfg.model
    dataset = SyntheticVideoDataset(
        n_clips=spec["batch"] * 2, n_frames=m.n_frames, size=m.resolution, seed=0, train=True
    )
    # (2B, C, T, S, S) float in [-1, 1]
    clips = torch.stack([to_float(dataset.get_clip(i, 0)[0]) for i in range(len(dataset))])
    batches = [clips[: spec["batch"]].to(device), clips[spec["batch"] :].to(device)]
    counter = iter(range(1 << 62))

    def next_real():
        return batches[next(counter) % 2], None

    trainer = Trainer(cfg, device)  # train.compile: the Trainer compiles G's forward, never D
    rss_before = _rss_gb("VmRSS")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out_of_memory = False
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds: far less sensitive to other processes' load
    try:
        for _ in range(spec["warmup"]):
            trainer.step(next_real)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(spec["iters"]):
            start, cpu_start = time.perf_counter(), time.process_time()
            trainer.step(next_real)
            _sync(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    except torch.cuda.OutOfMemoryError:
        out_of_memory = True
    result = {
        **spec,
        "out_of_memory": out_of_memory,
        "step_seconds": times,
        "median_step_s": statistics.median(times) if times else None,
        "min_step_s": min(times) if times else None,
        "step_cpu_seconds": cpu_times,
        "median_step_cpu_s": statistics.median(cpu_times) if cpu_times else None,
        "rss_before_step_gb": rss_before,
        "peak_rss_gb": _rss_gb("VmHWM"),
        "threads": torch.get_num_threads(),
        # other processes on a shared machine slow the step down: the 1-minute load around the run
        "load_average_1min": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")],
    }
    if device.type == "cuda":
        result["peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    result["peak_memory_gb"] = (
        result["peak_allocated_gb"] if device.type == "cuda" else result["peak_rss_gb"] - rss_before
    )
    return result


def run_in_child(spec: dict, timeout: float | None = None) -> dict:
    """Run ``child_step_run(spec)`` in a fresh Python process and return its JSON result."""
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "-m", "tganv2.bench.step", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        return {**spec, "out_of_memory": "OutOfMemory" in proc.stderr, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def largest_batch(
    spec: dict, measured: dict, max_batch: int, memory_budget_gb: float
) -> tuple[int, list[dict]]:
    """The largest batch ``spec['batch']·2^k ≤ max_batch`` that fits; returns it and every trial run.

    CUDA: double the batch until a step runs out of memory. CPU (where running out of memory means
    swapping or the OOM killer, on a machine shared with others): predict the peak RSS as linear in the
    batch from ``measured`` (the run at ``spec['batch']``), pick the largest batch whose prediction stays
    within ``memory_budget_gb``, then verify it with one step (halving while it does not fit).
    """
    batch, trials = spec["batch"], []
    if spec["device"].startswith("cuda"):
        best = batch if not (measured.get("error") or measured.get("out_of_memory")) else 0
        while best and best * 2 <= max_batch:
            result = run_in_child({**spec, "batch": best * 2, "warmup": 1, "iters": 1})
            trials.append(result)
            if result.get("error") or result["out_of_memory"]:
                break
            best *= 2
        return best, trials
    per_sample = measured["peak_memory_gb"] / batch

    def predicted(b: int) -> float:
        return measured["rss_before_step_gb"] + per_sample * b

    candidate = batch
    while candidate * 2 <= max_batch and predicted(candidate * 2) <= memory_budget_gb:
        candidate *= 2
    while candidate > batch:
        result = run_in_child({**spec, "batch": candidate, "warmup": 0, "iters": 1})
        result["predicted_peak_rss_gb"] = predicted(candidate)
        trials.append(result)
        if not result.get("error") and result["peak_rss_gb"] <= memory_budget_gb:
            return candidate, trials
        candidate //= 2
    return (batch if measured["peak_rss_gb"] <= memory_budget_gb else 0), trials


def step_report(
    preset: str = "small-64",
    precision: str = "fp32",
    compile: bool = False,
    batch: int | None = None,
    iters: int = 5,
    warmup: int = 2,
    device: str | None = None,
    variants: tuple[str, ...] = ("tganv2", "no-subsampling"),
    overrides: list[str] | None = None,
    find_max_batch: bool = False,
    max_batch: int = 256,
    memory_budget_gb: float = 4.0,
    repeats: int = 1,
    threads: int = 0,
) -> dict:
    """Speed, peak memory and MFU of ``variants`` at an equal batch, optionally their largest batch.

    ``repeats`` rounds run every variant once each, alternating, so that a burst of load from other
    processes does not fall on one variant only; the median is over the timed steps of all rounds.
    """
    from .cost import train_step_gflops

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = batch or load_preset(preset, list(overrides or [])).train.batch
    rates = {
        "bf16_matmul_tflops": matmul_tflops(device, torch.bfloat16),
        "fp32_matmul_tflops": matmul_tflops(device, torch.float32),
    }
    specs = {
        variant: {
            "preset": preset,
            "variant": variant,
            "batch": batch,
            "precision": precision,
            "compile": compile,
            "device": device,
            "warmup": warmup,
            "iters": iters,
            "overrides": list(overrides or []),
            "threads": threads,
        }
        for variant in variants
    }
    rounds: dict[str, list[dict]] = {variant: [] for variant in variants}
    for _ in range(repeats):
        for variant in variants:
            rounds[variant].append(run_in_child(specs[variant]))
    results = {}
    for variant, runs in rounds.items():
        run = _merge_rounds(runs)
        flops = train_step_gflops(_variant_config(preset, variant, batch, precision, overrides), batch)
        run["train_step_gflops"] = sum(flops.values())
        if run.get("median_step_s"):
            run["iterations_per_s"] = 1.0 / run["median_step_s"]
            achieved = run["train_step_gflops"] / run["median_step_s"] / 1e3  # TFLOP/s
            run["achieved_tflops"] = achieved
            run["mfu_vs_bf16_matmul"] = achieved / rates["bf16_matmul_tflops"]
            run["mfu_vs_fp32_matmul"] = achieved / rates["fp32_matmul_tflops"]
        if find_max_batch and run.get("median_step_s"):
            spec = specs[variant]
            run["largest_batch"], run["batch_trials"] = largest_batch(spec, run, max_batch, memory_budget_gb)
        results[variant] = run
    return {
        "preset": preset,
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else _cpu_name(),
        "cpu_threads": torch.get_num_threads(),
        "precision": precision,
        "compile": compile,
        "batch": batch,
        "overrides": list(overrides or []),
        "iters": iters,
        "warmup": warmup,
        "repeats": repeats,
        "max_batch": max_batch if find_max_batch else None,
        "memory_budget_gb": memory_budget_gb if find_max_batch and device == "cpu" else None,
        **rates,
        "variants": results,
    }


def _merge_rounds(runs: list[dict]) -> dict:
    """One result from several child runs of the same spec: all timed steps, the worst peak memory."""
    merged = dict(runs[0])
    ok = [r for r in runs if r.get("step_seconds")]
    if len(runs) > 1 and ok:
        merged["step_seconds"] = [t for r in ok for t in r["step_seconds"]]
        merged["median_step_s"] = statistics.median(merged["step_seconds"])
        merged["min_step_s"] = min(merged["step_seconds"])
        merged["step_cpu_seconds"] = [t for r in ok for t in r.get("step_cpu_seconds", [])]
        if merged["step_cpu_seconds"]:
            merged["median_step_cpu_s"] = statistics.median(merged["step_cpu_seconds"])
        for key in ("peak_memory_gb", "peak_rss_gb", "peak_allocated_gb"):
            if key in ok[0]:
                merged[key] = max(r[key] for r in ok)
        keys = ("median_step_s", "median_step_cpu_s", "peak_memory_gb", "load_average_1min", "error")
        merged["rounds"] = [{k: r.get(k) for k in keys} for r in runs]
    return merged


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


if __name__ == "__main__":  # the child process of run_in_child
    print(json.dumps(child_step_run(json.loads(sys.argv[1]))))
