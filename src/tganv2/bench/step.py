"""Wall-clock speed and peak memory of real training steps (``tganv2 bench step``).

Every measurement runs ``Trainer.step`` (the official iteration: G first, D reusing the fakes, R1 on the
reals) in a **child process**, one per (variant, batch), so that peak memory is that run's alone:

* CUDA: ``torch.cuda.max_memory_allocated`` over the timed steps;
* CPU: the child's peak resident set (``VmHWM``), reported with the resident set just before the first
  step (model, optimisers and the pre-rendered batches), whose difference is the step's own peak.

Real batches come from the built-in synthetic dataset, rendered once before timing as uint8 on the device
and cycled (the step converts them to float there, as in training), so the figures are the training step
alone (no data loading). Warm-up steps come first (they include ``torch.compile`` of G's forward when
asked, through ``train.compile``; D is never compiled because R1 differentiates it twice); the reported
time is the median of the timed steps. On a shared machine the median is at the mercy of other processes'
load, so the fastest step (``min_step_s``) and the process CPU seconds are kept too, with the 1-minute
load average around each run.

Each child receives the **resolved config** (``config_to_dict`` of the variant at its batch, precision and
compile setting), so a ``--config`` YAML reaches it, and runs the same device set-up as ``tganv2 train``
(``training.device.configure_backends``: TF32 and cuDNN autotuning on CUDA) at ``threads`` torch threads.

Model FLOP utilisation = training-step FLOPs (the meta-device count of ``cost.train_step_gflops`` at the
same batch) / median step time / the device's dense matmul rate, measured by the first child before its
steps (the same process set-up and thread count as the steps): bf16, and fp32 as training runs it, which on
CUDA is the TF32 rate. ``mfu`` is against the rate of the run's precision.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import Tensor

from ..config import Config, apply_overrides, config_from_dict, config_to_dict, variant_config
from ..data.synthetic import SyntheticVideoDataset
from ..training.device import backend_settings, configure_backends
from ..training.step import Trainer
from .cost import train_step_gflops

__all__ = [
    "matmul_tflops",
    "matmul_rate_and_size",
    "step_config",
    "matmul_rates",
    "measured_rates",
    "synthetic_clips",
    "time_steps",
    "child_step_run",
    "run_in_child",
    "largest_batch",
    "step_report",
]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _default_matmul_size(device: torch.device) -> int:
    return 8192 if device.type == "cuda" else 2048


_PROBE_SIZE = 256  # the operand size whose product's time predicts the larger ones


def matmul_tflops(
    device: str | torch.device, dtype: torch.dtype, size: int = 0, repeats: int = 5, budget_s: float = 1.0
) -> float:
    """Measured dense matmul rate (TFLOP/s) of ``size × size`` operands; the best of ``repeats`` runs."""
    return matmul_rate_and_size(device, dtype, size, repeats, budget_s)[0]


def matmul_rate_and_size(
    device: str | torch.device, dtype: torch.dtype, size: int = 0, repeats: int = 5, budget_s: float = 1.0
) -> tuple[float, int]:
    """``matmul_tflops`` and the operand size it timed, which may be smaller than ``size``:

    a 256² probe first predicts each product's time (as size³); where that exceeds ``budget_s`` the size is
    halved until it does not (down to 256). bf16 emulated on a CPU without bf16 instructions runs at about
    1 GFLOP/s, where one 2048² product takes a minute: its rate then comes from a smaller product, in about a
    second, instead of stalling every ``bench step`` for six minutes.
    """
    device = torch.device(device)
    size = size or _default_matmul_size(device)
    if size > _PROBE_SIZE:
        probe = _best_product_seconds(device, dtype, _PROBE_SIZE, repeats=1)
        while size > _PROBE_SIZE and probe * (size / _PROBE_SIZE) ** 3 > budget_s:
            size //= 2
    return 2 * size**3 / _best_product_seconds(device, dtype, size, repeats) / 1e12, size


def _best_product_seconds(device: torch.device, dtype: torch.dtype, size: int, repeats: int) -> float:
    """The fastest of ``repeats`` ``size × size`` products, after one warm-up (and lazy init)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    (a @ b).sum().item()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best


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


def step_config(cfg: Config, variant: str, batch: int, precision: str, compile: bool = False) -> Config:
    """``cfg`` (the resolved config), with the ablation ``variant``, then the batch, precision and compile."""
    overrides = {"train.batch": batch, "train.precision": precision, "train.compile": compile}
    return apply_overrides(variant_config(cfg, variant), overrides)


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _child_setup(spec: dict) -> torch.device:
    """The set-up of every child: training's backend flags and the requested thread count."""
    device = torch.device(spec["device"])
    configure_backends(device)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    return device


def matmul_rates(device: torch.device, size: int = 0) -> dict:
    """The matmul rates of this process as it is set up (call after ``_child_setup``)."""
    bf16_tflops, bf16_size = matmul_rate_and_size(device, torch.bfloat16, size)
    # fp32 as training computes it: TF32 tensor cores on CUDA (configure_backends), IEEE fp32 on CPU
    fp32_tflops, fp32_size = matmul_rate_and_size(device, torch.float32, size)
    return {
        "bf16_matmul_tflops": bf16_tflops,
        "fp32_matmul_tflops": fp32_tflops,
        "matmul_size": fp32_size,
        "bf16_matmul_size": bf16_size,  # smaller where bf16 is emulated (see matmul_rate_and_size)
        "fp32_matmul_mode": "tf32"
        if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32
        else "ieee",
        "matmul_threads": torch.get_num_threads(),
        "backends": backend_settings(),
    }


def synthetic_clips(cfg: Config, n: int) -> Tensor:
    """``n`` clips of the built-in synthetic dataset at ``cfg``'s size: (n, C, T, S, S) uint8, as the loader
    yields them (``Trainer.step`` converts them on its device, as in training)."""
    m = cfg.model
    dataset = SyntheticVideoDataset(n_clips=n, n_frames=m.n_frames, size=m.resolution, seed=0)
    return torch.stack([dataset.get_clip(i, 0)[0] for i in range(n)])


def time_steps(
    cfg: Config, device: torch.device, warmup: int, iters: int, clips: Tensor | None = None
) -> dict:
    """Build a Trainer for the resolved ``cfg`` and time ``iters`` steps after ``warmup`` (this process).

    ``clips`` are the 2·batch real clips to alternate (default: rendered from the synthetic dataset). The
    peak memory is this call's on CUDA (``max_memory_allocated`` after a reset) and the process's peak
    resident set on the CPU (so one call per process there).
    """
    torch.manual_seed(0)
    batch = cfg.train.batch
    clips = synthetic_clips(cfg, 2 * batch) if clips is None else clips  # (2B, C, T, S, S)
    batches = [clips[:batch].to(device), clips[batch:].to(device)]
    counter = iter(range(1 << 62))

    def next_real():
        return batches[next(counter) % 2], None

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(cfg, device)  # train.compile: the Trainer compiles G's forward, never D
    rss_before = _rss_gb("VmRSS")
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out_of_memory = False
    times: list[float] = []
    cpu_times: list[float] = []  # process CPU seconds: far less sensitive to other processes' load
    try:
        for _ in range(warmup):
            trainer.step(next_real)
        _sync(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(iters):
            start, cpu_start = time.perf_counter(), time.process_time()
            trainer.step(next_real)
            _sync(device)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
    except torch.cuda.OutOfMemoryError:
        out_of_memory = True
    result = {
        "batch": batch,
        "precision": cfg.train.precision,
        "compile": cfg.train.compile,
        "generator_parameters": _parameters(trainer.generator),
        "discriminator_parameters": _parameters(trainer.discriminator),
        "backends": backend_settings(),
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
        del trainer, batches, clips
        torch.cuda.empty_cache()
    result["peak_memory_gb"] = (
        result["peak_allocated_gb"] if device.type == "cuda" else result["peak_rss_gb"] - rss_before
    )
    return result


def child_step_run(spec: dict) -> dict:
    """The child process's work: timed steps of ``spec['config']``, with this process's matmul rates first
    if ``spec['matmul_rates']`` (the rates alone with ``task: matmul``)."""
    device = _child_setup(spec)
    rates = matmul_rates(device, spec.get("matmul_size", 0)) if spec.get("matmul_rates") else None
    if spec.get("task") == "matmul":
        return rates
    cfg = config_from_dict(spec["config"])
    brief = {k: v for k, v in spec.items() if k != "config"}
    result = {**brief, **time_steps(cfg, device, spec["warmup"], spec["iters"])}
    if rates is not None:
        result["matmul"] = rates
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
        brief = {k: v for k, v in spec.items() if k != "config"}
        return {**brief, "out_of_memory": "OutOfMemory" in proc.stderr, "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def with_batch(spec: dict, batch: int) -> dict:
    """``spec`` with its config's level-1 batch set to ``batch``."""
    cfg = config_from_dict(spec["config"])
    return {**spec, "config": config_to_dict(apply_overrides(cfg, {"train.batch": batch}))}


def largest_batch(
    spec: dict, measured: dict, max_batch: int, memory_budget_gb: float
) -> tuple[int, list[dict]]:
    """The largest batch (the spec's batch ·2^k ≤ max_batch) that fits; returns it and every trial run.

    CUDA: double the batch until a step runs out of memory. CPU (where running out of memory means
    swapping or the OOM killer, on a machine shared with others): predict the peak RSS as linear in the
    batch from ``measured`` (the run at ``spec['batch']``), pick the largest batch whose prediction stays
    within ``memory_budget_gb``, then verify it with one step (halving while it does not fit).
    """
    batch, trials = spec["config"]["train"]["batch"], []
    if spec["device"].startswith("cuda"):
        best = batch if not (measured.get("error") or measured.get("out_of_memory")) else 0
        while best and best * 2 <= max_batch:
            result = run_in_child({**with_batch(spec, best * 2), "warmup": 1, "iters": 1})
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
        result = run_in_child({**with_batch(spec, candidate), "warmup": 0, "iters": 1})
        result["predicted_peak_rss_gb"] = predicted(candidate)
        trials.append(result)
        if not result.get("error") and result["peak_rss_gb"] <= memory_budget_gb:
            return candidate, trials
        candidate //= 2
    return (batch if measured["peak_rss_gb"] <= memory_budget_gb else 0), trials


def measured_rates(device: str, threads: int = 0, size: int = 0) -> dict:
    """The matmul rates measured in a child process with the step children's set-up and thread count."""
    spec = {"task": "matmul", "matmul_rates": True, "device": device, "threads": threads, "matmul_size": size}
    rates = run_in_child(spec)
    if "error" in rates:
        raise RuntimeError(f"matmul rate measurement failed: {rates['error']}")
    return rates


def step_report(
    cfg: Config,
    precision: str = "fp32",
    compile: bool = False,
    batch: int | None = None,
    iters: int = 5,
    warmup: int = 2,
    device: str | None = None,
    variants: tuple[str, ...] = ("preset", "no-subsampling"),
    find_max_batch: bool = False,
    max_batch: int = 256,
    memory_budget_gb: float = 4.0,
    repeats: int = 1,
    threads: int = 0,
    matmul_size: int = 0,
) -> dict:
    """Speed, peak memory and MFU of ``variants`` of the resolved ``cfg`` at an equal batch.

    ``repeats`` rounds run every variant once each, alternating, so that a burst of load from other
    processes does not fall on one variant only; the median is over the timed steps of all rounds.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    batch = batch or cfg.train.batch
    configs = {v: step_config(cfg, v, batch, precision, compile) for v in variants}
    specs = {
        variant: {
            "variant": variant,
            "config": config_to_dict(configs[variant]),
            "device": device,
            "warmup": warmup,
            "iters": iters,
            "threads": threads,
        }
        for variant in variants
    }
    rounds: dict[str, list[dict]] = {variant: [] for variant in variants}
    rates = None  # measured by the first child, before its steps: the same process set-up and threads
    for _ in range(repeats):
        for variant in variants:
            extra = {"matmul_rates": True, "matmul_size": matmul_size} if rates is None else {}
            run = run_in_child({**specs[variant], **extra})
            rates = rates or run.pop("matmul", None)
            rounds[variant].append(run)
    rates = rates or measured_rates(device, threads, matmul_size)  # the first child failed
    rate_of_precision = rates["bf16_matmul_tflops" if precision == "bf16" else "fp32_matmul_tflops"]
    results = {}
    for variant, runs in rounds.items():
        run = _merge_rounds(runs)
        run["train_step_gflops"] = sum(train_step_gflops(configs[variant], batch).values())
        if run.get("median_step_s"):
            run["iterations_per_s"] = 1.0 / run["median_step_s"]
            run["clips_per_s"] = batch / run["median_step_s"]
            achieved = run["train_step_gflops"] / run["median_step_s"] / 1e3  # TFLOP/s
            run["achieved_tflops"] = achieved
            run["mfu"] = achieved / rate_of_precision
            run["mfu_vs_bf16_matmul"] = achieved / rates["bf16_matmul_tflops"]
            run["mfu_vs_fp32_matmul"] = achieved / rates["fp32_matmul_tflops"]
        if find_max_batch and run.get("median_step_s"):
            spec = specs[variant]
            run["largest_batch"], run["batch_trials"] = largest_batch(spec, run, max_batch, memory_budget_gb)
        results[variant] = run
    return {
        "preset": cfg.preset,
        "config": config_to_dict(cfg),
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else _cpu_name(),
        "cpu_threads": rates["matmul_threads"],
        "precision": precision,
        "compile": compile,
        "batch": batch,
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
