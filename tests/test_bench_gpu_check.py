"""``benchmarks/gpu_check.{sh,py}``: the GPU check's dry mode (CPU, tiny configs) runs every stage.

The dry run is what keeps the script from rotting between the rare runs on a GPU: the same stages and the
same report, with the CPU as the device. It runs with PyAV made unimportable, as on the bare GPU machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NO_AV = "import sys; sys.modules['av'] = None  # no PyAV, as on the GPU machine\n"


def _driver():
    """benchmarks/gpu_check.py as a module (registered, as its dataclasses need)."""
    if str(SCRIPT.parent) not in sys.path:
        sys.path.insert(0, str(SCRIPT.parent))  # as when run as a script: gpu_check_report beside it
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


def _dry_run(tmp_path: Path, block_av: bool) -> subprocess.CompletedProcess:
    blocker = tmp_path / "no-av"
    blocker.mkdir(exist_ok=True)
    (blocker / "av.py").write_text("raise ImportError('PyAV is not installed (blocked by the test)')\n")
    paths = [str(blocker)] if block_av else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(ROOT / "src")]), "GPU_CHECK_DRY": "1"}
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir(exist_ok=True)
    command = [sys.executable, str(SCRIPT), "all", "--work", str(work), "--out", str(out)]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_dry_run_runs_every_stage_and_writes_only_the_report(tmp_path):
    proc = _dry_run(tmp_path, block_av=True)  # the GPU machine has no PyAV: every stage must run without it
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.md"]
    report = json.loads((out / "gpu_check.json").read_text())
    stages = report["stages"]
    assert report["dry"] and list(stages) == ["env", "correctness", "finite", "gpu-tests", "data", "speed"]
    assert all(stage["status"] == "passed" for stage in stages.values()), {
        name: stage["status"] for name, stage in stages.items()
    }
    assert stages["correctness"]["fp32_vs_float64"]["passed"] is True
    assert re.match(r"\d+ skipped", stages["gpu-tests"]["summary"])  # no CUDA here
    assert "tests/test_gpu.py" in stages["gpu-tests"]["files"]
    rows = stages["speed"]["rows"]
    assert [(r["batch"], r["status"]) for r in rows] == [(4, "ok"), (2, "ok")]
    rate = stages["env"]["rates"]["fp32_matmul_tflops"]
    for row in rows:  # MFU: the step's FLOPs per second over the matmul rate measured in the same run
        assert row["mfu"] == pytest.approx(row["train_step_gflops"] / row["median_step_s"] / 1e3 / rate)
        assert row["clips_per_s"] == pytest.approx(row["batch"] / row["median_step_s"])
    assert stages["data"]["rows"][0]["clips_per_s"] > 0
    text = (out / "gpu_check.md").read_text()
    assert "| small-64 | fp32 | no | 4 | ok |" in text and "dry run" in text


def test_speed_group_past_its_deadline_marks_every_row_skipped(capsys):
    gpu_check = _driver()
    spec = {
        "preset": "small-64",
        "overrides": gpu_check.TINY,
        "precision": "fp32",
        "compile": False,
        "batches": [4, 2],
        "device": "cpu",
        "warmup": 0,
        "iters": 1,
        "deadline": time.time() - 1,
        "first_row_seconds": 5.0,
        "threads": 1,
    }
    gpu_check.speed_group(spec)
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["batch"], r["status"], r["reason"]) for r in rows] == [
        (4, "skipped", "time budget"),
        (2, "skipped", "time budget"),
    ]


def test_targets_compare_the_best_row_with_the_issues_numbers():
    _driver()
    import gpu_check_report as gpu_check

    rates = {"bf16_matmul_tflops": 800.0, "fp32_matmul_tflops": 400.0}
    speed = {
        "rows": [  # 1000 TFLOP per step: at 2.5 it/s 2500 TFLOP/s, i.e. MFU 3.125 of bf16
            {
                "preset": "ucf101-192-bsr",
                "batch": 256,
                "precision": "bf16",
                "compile": False,
                "status": "ok",
                "median_step_s": 0.4,
                "train_step_gflops": 1e5,
            },
            {
                "preset": "ucf101-192-bsr",
                "batch": 256,
                "precision": "tf32",
                "compile": True,
                "status": "ok",
                "median_step_s": 0.5,
                "train_step_gflops": 1e5,
            },
            {
                "preset": "ucf101-192",
                "batch": 128,
                "precision": "bf16",
                "compile": False,
                "status": "ok",
                "median_step_s": 1.0,
                "train_step_gflops": 1e5,
            },  # 100 TFLOP/s: 12.5%
        ]
    }
    gpu_check._add_rates(speed, {"rates": rates})
    assert speed["rows"][0]["mfu"] == pytest.approx(100 / 0.4 / 800)
    assert speed["rows"][1]["mfu"] == pytest.approx(100 / 0.5 / 400)  # TF32 rows against the TF32 rate
    targets = {t["preset"]: t for t in gpu_check._targets(speed)}
    bsr, ucf = targets["ucf101-192-bsr"], targets["ucf101-192"]
    assert bsr["best"]["precision"] == "tf32" and bsr["met"] is False  # MFU 50% but 2.0 < 2.3 it/s
    assert ucf["best"]["mfu"] == pytest.approx(0.125) and ucf["met"] is False


def test_shell_driver_runs_the_python_stages_in_order():
    shell = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)
    assert "\nset -euo pipefail\n" in shell
    stages = re.findall(r"^\s*stage ([a-z-]+) ", shell, flags=re.MULTILINE)
    assert tuple(stages) == _driver().STAGES
    assert "timeout --kill-after" in shell and "mktemp -d" in shell and 'rm -rf "$WORK"' in shell


def test_a_group_restarts_below_a_batch_that_ran_out_of_memory(monkeypatch):
    gpu_check = _driver()
    calls = []

    def fake_child(spec, deadline):
        calls.append(spec["batches"])
        first, *_ = spec["batches"]
        if first > 64:  # 256 and 128 do not fit
            return [gpu_check._row("p", "bf16", False, first, "cuda", status="oom")], None
        if first == 64:
            return [gpu_check._row("p", "bf16", False, 64, "cuda", status="ok")], "RuntimeError: boom"
        raise AssertionError("no child after a failed one")

    monkeypatch.setattr(gpu_check, "_run_child", fake_child)
    spec = {
        "preset": "p",
        "precision": "bf16",
        "compile": False,
        "batches": [256, 128, 64, 32],
        "device": "cuda",
    }
    rows = gpu_check._run_group(spec, deadline=time.time() + 60)
    assert calls == [[256, 128, 64, 32], [128, 64, 32], [64, 32]]
    assert [(r["batch"], r["status"]) for r in rows] == [
        (256, "oom"),
        (128, "oom"),
        (64, "ok"),
        (32, "error"),
    ]
    assert rows[-1]["reason"] == "RuntimeError: boom"
