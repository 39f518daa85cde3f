"""The GPU check in one call (issue 13): correctness, speed and data loading on one CUDA GPU.

``benchmarks/gpu_check.sh`` runs one stage per process, each under its own ``timeout``:

    python3 benchmarks/gpu_check.py STAGE --work DIR [--budget S] [--out DIR]

* ``env``: torch, CUDA and the device; the dense matmul rates (8192², bf16, fp32 as training runs it, i.e.
  TF32, and IEEE fp32), with training's device set-up (``training.device.configure_backends``);
* ``correctness``: one ``ucf101-192`` step (batch 2) on the GPU in fp32 with TF32 off against the same step
  in float64 on the CPU: losses and gradients within ``bench.devicecheck.TOLERANCE``; the TF32 step is
  measured against it too, for information;
* ``finite``: 200 bf16 iterations of ``ucf101-192`` (batch 8): every weight and loss stays finite;
* ``gpu-tests``: ``pytest -m gpu`` on the test files that have such tests (``tests/test_gpu.py`` and others);
* ``data``: clips/s of the HDF5 loader (``make_loader``) at 192 px with 8 and 16 workers, on a synthetic
  HDF5 file in the official layout written to the scratch folder;
* ``speed``: ``ucf101-192-bsr``, ``ucf101-192`` and ``faceforensics-256`` at per-GPU batch 256/128/64/32,
  bf16 and TF32, eager and ``--compile``: it/s, clips/s, peak GB (``max_memory_allocated``) and MFU against
  the rate of ``env``. One child process per (preset, precision, compile), most important first, batches
  from the largest down, real clips as uint8 (a batch that does not fit is recorded as ``oom``, and the
  smaller ones run in a fresh process). The grid stops when
  ``--budget`` runs out and marks the rows it did not reach ``skipped``;
* ``report``: every stage's JSON and exit status into ``OUT/gpu_check.json`` and ``OUT/gpu_check.md``
  (``gpu_check_report.py``), with MFU and the comparison with the issue's targets.

Each stage writes ``WORK/STAGE.json``; nothing but the report goes to ``OUT``. ``all`` runs every stage in
this process (the speed groups still in children), as the dry-run test does. ``--dry`` or
``GPU_CHECK_DRY=1``: the CPU and tiny configs, so that the script can be exercised anywhere in seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import gc
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from gpu_check_report import write_report  # beside this script (its folder is on sys.path)
from tganv2.bench.cost import train_step_gflops
from tganv2.bench.devicecheck import LOSSES, compare_steps, initial_state, step_inputs, step_on
from tganv2.bench.step import matmul_rates, matmul_tflops, step_config, synthetic_clips, time_steps
from tganv2.config import load_preset
from tganv2.data.hdf5 import HDF5VideoDataset
from tganv2.data.loader import make_loader
from tganv2.data.synthetic import SyntheticVideoDataset
from tganv2.training.device import configure_backends
from tganv2.training.step import Trainer

STAGES = ("env", "correctness", "finite", "gpu-tests", "data", "speed", "report")
TINY = {"model.n_frames": 8, "model.z_dim": 8, "model.ch": 2, "model.clstm_ch": 8, "model.d_ch": 2}


@dataclass
class Settings:
    """What each stage runs: the H200 check, or tiny CPU stand-ins (``dry``)."""

    dry: bool
    device: str
    matmul_size: int
    correct_preset: str
    correct_overrides: dict
    finite_overrides: dict
    finite_iterations: int
    finite_precision: str
    threads: int  # torch threads of every stage (0: torch's default; the float64 reference: all cores)
    speed_presets: list[str]
    speed_overrides: dict
    speed_batches: list[int]  # largest first
    speed_groups: list[tuple[str, str, bool]]  # (preset, precision, compile), most important first
    warmup: int
    iters: int
    first_row_seconds: dict = field(default_factory=dict)  # estimate before a group's first row
    data_size: int = 192
    data_stored: tuple[int, int] = (192, 256)
    data_videos: int = 48
    data_video_frames: int = 40
    data_workers: list[int] = field(default_factory=lambda: [8, 16])
    data_batch: int = 32
    data_batches: int = 20


def settings(dry: bool) -> Settings:
    if dry:
        tiny = dict(TINY)
        return Settings(
            dry=True,
            device="cpu",
            matmul_size=256,
            correct_preset="small-64",
            correct_overrides={**tiny, "train.batch": 2},
            finite_overrides={**tiny, "train.batch": 2},
            finite_iterations=3,
            finite_precision="fp32",
            threads=1,
            speed_presets=["small-64"],
            speed_overrides=tiny,
            speed_batches=[4, 2],
            speed_groups=[("small-64", "fp32", False)],  # bf16 is emulated (slow) on most CPUs
            warmup=0,
            iters=1,
            first_row_seconds={False: 5.0, True: 30.0},
            data_size=32,
            data_stored=(32, 48),
            data_videos=8,
            data_video_frames=20,
            data_workers=[1],
            data_batch=4,
            data_batches=3,
        )
    presets = ["ucf101-192-bsr", "ucf101-192", "faceforensics-256"]
    # the targets first (bf16, eager), then TF32, then compile; faceforensics after the UCF101 rows of each
    ucf = ("ucf101-192-bsr", "ucf101-192")
    face = "faceforensics-256"
    groups = [
        (p, precision, compiled)
        for precision, compiled in (("bf16", False), ("fp32", False), ("bf16", True))
        for p in ucf
    ]
    groups += [(face, precision, False) for precision in ("bf16", "fp32")]
    groups += [(p, "fp32", True) for p in ucf] + [(face, precision, True) for precision in ("bf16", "fp32")]
    return Settings(
        dry=False,
        device="cuda",
        matmul_size=8192,
        correct_preset="ucf101-192",
        correct_overrides={"train.batch": 2},  # the float64 CPU step must fit in about a minute
        finite_overrides={"train.batch": 8},
        finite_iterations=200,
        finite_precision="bf16",
        threads=0,
        speed_presets=presets,
        speed_overrides={},
        speed_batches=[256, 128, 64, 32],
        speed_groups=groups,
        warmup=1,
        iters=3,
        first_row_seconds={False: 25.0, True: 90.0},
    )


def log(message: str) -> None:
    print(f"gpu_check: {message}", file=sys.stderr, flush=True)


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _precision_label(precision: str, device: str) -> str:
    return "tf32" if precision == "fp32" and device.startswith("cuda") else precision


# --- stages ------------------------------------------------------------------------------------------------


def stage_env(s: Settings, args) -> dict:
    device = torch.device(s.device)
    info = {
        "dry": s.dry,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": s.device,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name, memory_gb=props.total_memory / 1e9, capability=[props.major, props.minor]
        )
    else:
        info["device_name"] = platform.processor() or "cpu"
    configure_backends(device)
    info["rates"] = matmul_rates(device, s.matmul_size)  # fp32 = TF32 on CUDA, as training runs it
    torch.backends.cuda.matmul.allow_tf32 = False
    info["rates"]["ieee_fp32_matmul_tflops"] = matmul_tflops(device, torch.float32, s.matmul_size)
    configure_backends(device)
    log(
        f"{info['device_name']}: matmul bf16 {info['rates']['bf16_matmul_tflops']:.1f} TFLOP/s, "
        f"fp32 ({info['rates']['fp32_matmul_mode']}) {info['rates']['fp32_matmul_tflops']:.1f} TFLOP/s"
    )
    return info


def stage_correctness(s: Settings, args) -> dict:
    """fp32 on the device (TF32 off) against float64 on the CPU; TF32 against it for information."""
    cfg = load_preset(s.correct_preset, s.correct_overrides)
    state = initial_state(cfg)
    clips, z = step_inputs(cfg)
    torch.set_num_threads(s.threads or os.cpu_count() or 1)
    start = time.perf_counter()
    reference = step_on(cfg, "cpu", torch.float64, state, clips, z)
    cpu_seconds = time.perf_counter() - start
    log(f"correctness: float64 CPU step in {cpu_seconds:.1f} s ({torch.get_num_threads()} threads)")
    device = torch.device(s.device)
    configure_backends(device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    fp32 = compare_steps(step_on(cfg, device, torch.float32, state, clips, z), reference)
    configure_backends(device)  # training's set-up: TF32 on CUDA
    tf32 = compare_steps(step_on(cfg, device, torch.float32, state, clips, z), reference)
    tf32["passed"] = None  # information only: TF32 rounds to 10 mantissa bits
    result = {
        "preset": s.correct_preset,
        "overrides": s.correct_overrides,
        "cpu_float64_seconds": cpu_seconds,
        "fp32_vs_float64": fp32,
        "tf32_vs_float64": tf32,
        "passed": fp32["passed"],
    }
    worst = max(fp32["loss_rel_error"].values())
    grads = {k: v["gradient_rel_l2"] for k, v in fp32["networks"].items()}
    log(
        f"correctness: fp32 vs float64: worst loss rel. error {worst:.2e}, gradients {grads}; "
        f"{'PASSED' if fp32['passed'] else 'FAILED'} (tolerance {fp32['tolerance']})"
    )
    return result


def stage_finite(s: Settings, args) -> dict:
    """Iterations from a fresh model in bf16: every weight and every loss stays finite."""
    device = torch.device(s.device)
    configure_backends(device)
    base = load_preset(s.correct_preset, s.finite_overrides)
    cfg = step_config(base, "preset", base.train.batch, s.finite_precision)
    batch = cfg.train.batch
    clips = synthetic_clips(cfg, 2 * batch).to(device)  # (2B, C, T, S, S): two batches, alternated
    trainer = Trainer(cfg, device)
    losses = []  # per step, where the trainer returns them (otherwise read once at the end)
    start = time.perf_counter()
    for it in range(s.finite_iterations):
        half = clips[(it % 2) * batch : (it % 2 + 1) * batch]
        stats = trainer.step(lambda half=half: (half, None))
        if isinstance(stats, dict):
            losses += [stats[k] for k in LOSSES]
    _sync(device)
    seconds = time.perf_counter() - start
    stats = trainer.read_stats() if hasattr(trainer, "read_stats") else stats
    losses += [stats[k] for k in LOSSES]
    weights = {
        name: all(bool(torch.isfinite(t).all()) for t in m.state_dict().values() if t.is_floating_point())
        for name, m in (("generator", trainer.generator), ("discriminator", trainer.discriminator))
    }
    finite_losses = all(math.isfinite(float(v)) for v in losses)
    passed = all(weights.values()) and finite_losses and not stats.get("diverged")
    verdict = "PASSED" if passed else "FAILED"
    log(f"finite: {s.finite_iterations} {s.finite_precision} iterations in {seconds:.1f} s; {verdict}")
    return {
        "preset": s.correct_preset,
        "precision": s.finite_precision,
        "batch": batch,
        "iterations": s.finite_iterations,
        "seconds": seconds,
        "iterations_per_s": s.finite_iterations / seconds,
        "last_stats": {k: float(v) for k, v in stats.items()},
        "finite_weights": weights,
        "finite_losses": finite_losses,
        "passed": passed,
    }


def gpu_test_files() -> list[str]:
    """The test files with ``-m gpu`` tests (only those are collected: others may need hypothesis, PyAV)."""
    return sorted(str(p) for p in Path("tests").glob("test_*.py") if "pytest.mark.gpu" in p.read_text())


def stage_gpu_tests(s: Settings, args) -> dict:
    files = gpu_test_files()
    options = ["-o", "addopts=", "-m", "gpu", "-q", "-p", "no:cacheprovider", "-rs"]  # addopts deselect gpu
    command = [sys.executable, "-m", "pytest", *files, *options]
    proc = subprocess.run(command, capture_output=True, text=True)
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else "(no output)"
    log(f"gpu-tests: {summary}")
    if proc.returncode:
        print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", file=sys.stderr)
    return {
        "command": " ".join(["pytest", *files, *options]),
        "files": files,
        "returncode": proc.returncode,
        "summary": summary,
        "passed": proc.returncode == 0,
    }


def write_hdf5(folder: Path, s: Settings) -> Path:
    """A synthetic HDF5 file in the official layout: ``image`` (frames, 3, H, W) uint8 and its JSON index."""
    rows, cols = s.data_stored
    frames = s.data_videos * s.data_video_frames
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, size=(s.data_video_frames, 3, rows, cols), dtype=np.uint8)
    path = folder / "synthetic.h5"
    with h5py.File(path, "w") as file:
        image = file.create_dataset("image", shape=(frames, 3, rows, cols), dtype=np.uint8)
        for v in range(s.data_videos):  # each video its own pixels (a rolled copy of one random block)
            image[v * s.data_video_frames : (v + 1) * s.data_video_frames] = np.roll(block, v, axis=-1)
    records = [
        {"start": v * s.data_video_frames, "end": (v + 1) * s.data_video_frames, "category": f"c{v % 4}"}
        for v in range(s.data_videos)
    ]
    path.with_suffix(".json").write_text(json.dumps(records))
    return path


def stage_data(s: Settings, args) -> dict:
    rows_out = []
    with tempfile.TemporaryDirectory(dir=args.work) as scratch:
        path = write_hdf5(Path(scratch), s)
        dataset = HDF5VideoDataset(path, n_frames=16 if not s.dry else 8, size=s.data_size, seed=0)
        for workers in s.data_workers:
            loader = make_loader(dataset, s.data_batch, num_workers=workers, seed=0, start_batch=0)
            batches = iter(loader)
            next(batches)  # warm-up: worker start-up, file opening
            start = time.perf_counter()
            for _ in range(s.data_batches):
                clips, _ = next(batches)
            seconds = time.perf_counter() - start
            rate = s.data_batches * s.data_batch / seconds
            rows_out.append(
                {
                    "workers": workers,
                    "clips_per_s": rate,
                    "batch": s.data_batch,
                    "clip_shape": list(clips.shape[1:]),
                    "pinned": bool(clips.is_pinned()),
                }
            )
            log(f"data: {workers} workers: {rate:.0f} clips/s")
            del batches, loader
    return {
        "size": s.data_size,
        "stored": list(s.data_stored),
        "videos": s.data_videos,
        "file_gb": s.data_videos * s.data_video_frames * 3 * s.data_stored[0] * s.data_stored[1] / 1e9,
        "rows": rows_out,
        "goal_clips_per_s": 600,
    }


def _row(preset: str, precision: str, compile: bool, batch: int, device: str, **fields) -> dict:
    return {
        "preset": preset,
        "precision": _precision_label(precision, device),
        "compile": compile,
        "batch": batch,
        **fields,
    }


def speed_group(spec: dict) -> None:
    """One (preset, precision, compile) in this process, batches largest first; one JSON line per row."""
    device = torch.device(spec["device"])
    configure_backends(device)
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    base = load_preset(spec["preset"], spec["overrides"])
    m = base.model
    # uint8 clips, as the loader yields them (the step converts them on the device): rendered once, tiled
    dataset = SyntheticVideoDataset(
        n_clips=min(2 * max(spec["batches"]), 32), n_frames=m.n_frames, size=m.resolution
    )
    pool = torch.stack([dataset.get_clip(i, 0)[0] for i in range(len(dataset))]).to(device)  # (n, C, T, S, S)
    estimate = spec["first_row_seconds"]
    for batch in spec["batches"]:
        key = (spec["preset"], spec["precision"], spec["compile"], batch, spec["device"])
        if time.time() + estimate > spec["deadline"]:
            print(json.dumps(_row(*key, status="skipped", reason="time budget")), flush=True)
            continue
        cfg = step_config(base, "preset", batch, spec["precision"], spec["compile"])
        start = time.perf_counter()
        try:
            clips = pool.repeat(-(-2 * batch // len(pool)), 1, 1, 1, 1)[: 2 * batch]  # (2B, C, T, S, S)
            run = time_steps(cfg, device, spec["warmup"], spec["iters"], clips=clips)
            del clips
        except torch.cuda.OutOfMemoryError:
            run = {"out_of_memory": True}
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        seconds = time.perf_counter() - start
        estimate = seconds
        if run.get("out_of_memory") or not run.get("median_step_s"):
            print(json.dumps(_row(*key, status="oom", seconds=seconds)), flush=True)
            return  # the smaller batches run in a fresh process (_run_group): no fragmented allocator
        keys = ("median_step_s", "min_step_s", "step_seconds", "peak_memory_gb", "generator_parameters")
        fields = {k: run[k] for k in keys if k in run}
        print(json.dumps(_row(*key, status="ok", seconds=seconds, **fields)), flush=True)


def _group_name(preset: str, precision: str, compile: bool, device: str) -> str:
    return f"{preset} {_precision_label(precision, device)}{' compiled' if compile else ''}"


def _run_child(spec: dict, deadline: float) -> tuple[list[dict], str | None]:
    """``speed_group(spec)`` in a child process: its rows, and the last line of its stderr if it failed."""
    command = [sys.executable, __file__, "speed-group", "--spec", json.dumps(spec), "--work", spec["work"]]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=max(5.0, deadline - time.time() + 20))
    except subprocess.TimeoutExpired:  # the child stops itself at the deadline; this is the backstop
        proc.kill()
        out, err = proc.communicate()
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows, (err.strip().splitlines() or ["(no output)"])[-1] if proc.returncode else None


def _run_group(spec: dict, deadline: float) -> list[dict]:
    """One group, restarted below a batch that ran out of memory; unreported rows: skipped or error."""
    rows: list[dict] = []
    todo, error = list(spec["batches"]), None
    while todo and error is None and time.time() < deadline:
        got, error = _run_child({**spec, "batches": todo}, deadline)
        rows += got
        todo = [b for b in todo if b not in {r["batch"] for r in got}]
        if not got or got[-1]["status"] != "oom":
            break
    key = (spec["preset"], spec["precision"], spec["compile"])
    for batch in todo:
        status = "error" if error else "skipped"
        rows.append(_row(*key, batch, spec["device"], status=status, reason=error or "time budget"))
    return sorted(rows, key=lambda r: -r["batch"])


def stage_speed(s: Settings, args) -> dict:
    deadline = time.time() + args.budget
    # the step FLOPs (meta device, CPU) are counted in a thread while the children use the GPU
    flops_pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    flops = {}
    for preset in s.speed_presets:
        base = load_preset(preset, s.speed_overrides)
        for batch in s.speed_batches:
            cfg = step_config(base, "preset", batch, "fp32")
            flops[preset, batch] = flops_pool.submit(
                lambda c=cfg: sum(train_step_gflops(c, c.train.batch).values())
            )
    rows: list[dict] = []
    for preset, precision, compile in s.speed_groups:
        name = _group_name(preset, precision, compile, s.device)
        if deadline - time.time() < s.first_row_seconds[compile]:
            skipped = dict(status="skipped", reason="time budget")
            rows += [_row(preset, precision, compile, b, s.device, **skipped) for b in s.speed_batches]
            log(f"speed: {name}: skipped (time budget)")
            continue
        spec = {
            "preset": preset,
            "overrides": s.speed_overrides,
            "precision": precision,
            "compile": compile,
            "batches": s.speed_batches,
            "device": s.device,
            "warmup": s.warmup + (1 if compile else 0),
            "iters": s.iters,
            "deadline": deadline,
            "first_row_seconds": s.first_row_seconds[compile],
            "work": str(args.work),
            "threads": s.threads,
        }
        group = _run_group(spec, deadline)
        rows += group
        speeds = [
            f"{r['batch']} {r['status']}"
            + (f" {1 / r['median_step_s']:.2f} it/s" if r.get("median_step_s") else "")
            for r in group
        ]
        log(f"speed: {name}: {', '.join(speeds)}")
    for row in rows:
        row["train_step_gflops"] = flops[row["preset"], row["batch"]].result()
    flops_pool.shutdown()
    if rows and all(r["status"] == "error" for r in rows):
        raise RuntimeError(f"every speed run failed, e.g. {rows[0]['reason']}")
    return {"budget_s": args.budget, "warmup": s.warmup, "iters": s.iters, "rows": rows}


def stage_report(s: Settings, args) -> dict:
    """Every stage's JSON and exit status into OUT/gpu_check.json and OUT/gpu_check.md (also printed)."""
    paths = write_report(Path(args.work), Path(args.out), STAGES[:-1], s.dry)
    print(paths["markdown"].read_text())
    return {"written": [str(p) for p in paths.values()]}


RUNNERS = {
    "env": stage_env,
    "correctness": stage_correctness,
    "finite": stage_finite,
    "gpu-tests": stage_gpu_tests,
    "data": stage_data,
    "speed": stage_speed,
    "report": stage_report,
}
PASS_FAIL = ("correctness", "finite", "gpu-tests")  # stages whose result decides their exit status


def run_stage(name: str, s: Settings, args) -> int:
    result = RUNNERS[name](s, args)
    if name != "report":
        write_json(Path(args.work) / f"{name}.json", result)
    return 1 if name in PASS_FAIL and not result.get("passed") else 0


def run_all(s: Settings, args) -> int:
    """Every stage in this process, with the status bookkeeping of gpu_check.sh (used by the dry-run test)."""
    failed = []
    for name in STAGES[:-1]:
        began = time.time()
        try:
            rc = run_stage(name, s, args)
        except Exception as e:  # noqa: BLE001 - record it and go on, like the shell driver
            log(f"stage {name} FAILED: {type(e).__name__}: {e}")
            rc = 1
        with open(Path(args.work) / "status.tsv", "a") as status:
            status.write(f"{name}\t{rc}\t{round(time.time() - began)}\t0\n")
        if rc:
            failed.append(name)
    run_stage("report", s, args)
    if failed:
        log(f"FAILED stages: {' '.join(failed)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=[*STAGES, "all", "speed-group"])
    parser.add_argument(
        "--work", required=True, help="scratch folder (outside OUT): stage JSONs, the HDF5 file"
    )
    parser.add_argument("--out", help="where the report goes (report, all)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds for the speed grid")
    parser.add_argument("--spec", help="(speed-group) the group to run, as JSON")
    parser.add_argument("--dry", action="store_true", help="CPU and tiny configs (also GPU_CHECK_DRY=1)")
    args = parser.parse_args(argv)
    s = settings(args.dry or os.environ.get("GPU_CHECK_DRY") == "1")
    if s.threads:  # the dry run: one thread (idle OpenMP threads spin on a loaded machine)
        torch.set_num_threads(s.threads)
    if args.stage == "speed-group":
        speed_group(json.loads(args.spec))
        return 0
    if args.stage == "all":
        return run_all(s, args)
    return run_stage(args.stage, s, args)


if __name__ == "__main__":
    sys.exit(main())
