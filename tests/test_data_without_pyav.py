"""Without PyAV (the bare GPU machine): the CLI, training and benchmarks work, samples fall back to GIF
with one warning, and `import av` happens only where a video file is read or written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
from PIL import Image

from conftest import child_env, tiny_args
from tganv2.data import read_frames

TINY = tiny_args()


def _png(frame) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def test_cli_training_and_benchmarks_run_without_pyav(tmp_path):
    """Also: the CLI parser and the training, data, metrics and bench modules import without PyAV."""
    # a StyleGAN-V zip of frame folders (Pillow only); one folder is too short and is skipped
    archive = tmp_path / "frames.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(archive, "w") as file:
        for v in range(6):
            for t in range(8 if v else 3):
                frame = rng.integers(0, 255, (16, 16, 3), np.uint8)
                file.writestr(f"class{v % 2}/video{v}/{t:05d}.png", _png(frame))
    out = tmp_path / "run"
    script = textwrap.dedent(
        f"""
        import sys
        import tganv2.bench.cli, tganv2.cli, tganv2.data, tganv2.metrics.cli, tganv2.training.loop
        tganv2.cli.build_parser()
        assert "av" not in sys.modules, "PyAV imported before any video file was read"
        sys.modules["av"] = None  # from here `import av` raises ImportError, as on a machine without PyAV
        from tganv2.cli import main
        try:
            main(["--help"])
        except SystemExit as e:
            assert e.code == 0
        assert main(["bench", "cost", "--preset", "small-64", "--batch", "4", "--json"]) == 0
        sys.exit(main(["train", "--preset", "small-64", "--data", {str(archive)!r}, "--out", {str(out)!r},
                       "--iterations", "2", "--sample-every", "2", "--checkpoint-every", "2", "--no-progress",
                       *{TINY!r}]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=child_env(), timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert "usage: tganv2" in result.stdout and '"generator"' in result.stdout  # help, bench cost JSON
    assert "Traceback" not in result.stderr and "warnings.warn" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith(f"tganv2: warning: {archive}: skipping 1 of 6 videos")
    assert warnings[1].startswith("tganv2: warning: PyAV is not installed (pip install av): writing GIF")
    samples = sorted(p.name for p in (out / "samples").iterdir())
    assert samples == ["iter_0000000.gif", "iter_0000002.gif"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    logged = [r["samples"] for r in records if "samples" in r]
    assert logged == samples  # the log names the file that was written
    grid = read_frames(out / "samples" / "iter_0000002.gif")  # 6 rows x 4 levels of 64-px, 8-frame videos
    assert grid.shape == (8, 6 * 66 + 2, 4 * 66 + 2, 3)
    assert (out / "checkpoints" / "ckpt-0000002.pt").is_file()


def test_bench_step_children_run_without_pyav(tmp_path):
    """``bench step`` times real steps in child processes: with PyAV blocked for them too (a module on the
    path that refuses to import), a tiny step still runs and reports its parameters."""
    blocker = tmp_path / "no-av"
    blocker.mkdir()
    (blocker / "av.py").write_text("raise ImportError('PyAV is not installed (blocked by the test)')\n")
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(blocker), env.get("PYTHONPATH", "")])
    argv = ["bench", "step", "--preset", "small-64", "--variants", "preset", "--batch", "2", "--iters", "1"]
    argv += ["--warmup", "0", "--threads", "1", "--matmul-size", "128", "--json", *tiny_args()]
    result = subprocess.run(
        [sys.executable, "-m", "tganv2.cli", *argv], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(result.stdout)["variants"]["preset"]
    assert "error" not in run, run.get("error")
    assert len(run["step_seconds"]) == 1 and run["generator_parameters"] > 0
