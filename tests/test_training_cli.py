"""`tganv2 train` / `tganv2 generate` end to end: exact resume after SIGKILL, run artefacts, failures."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import TGANV2, child_env, run_tganv2, tiny_args
from tganv2.data.video import read_video

TINY = tiny_args("data.synthetic_size=64", "train.log_every=1")


def _train_args(out: Path, *extra: str, preset: str = "small-64") -> list[str]:
    return ["train", "--preset", preset, "--out", str(out), "--no-progress", *extra, *TINY]


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    """N iterations in one go == N/2, SIGKILL, rerun the same command (every tensor torch.equal).

    The straight run also writes samples every 2 iterations: sampling must not perturb training.
    """
    args = ["--iterations", "8", "--checkpoint-every", "4", "--sample-every", "100"]
    straight = run_tganv2(*_train_args(tmp_path / "a", *args, "--sample-every", "2"))
    assert straight.returncode == 0, straight.stderr

    killed = _train_args(tmp_path / "b", *args)
    # the run stops inside the save of checkpoint 8 (after writing part of it) and writes `marker`; the
    # kill follows that file, not a timer
    marker = tmp_path / "paused"
    env = child_env(TGANV2_TEST_PAUSE_AT="8:write", TGANV2_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([*TGANV2, *killed], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert marker.exists(), "the run did not reach the save of checkpoint 8"
    assert (tmp_path / "b" / "checkpoints" / "ckpt-0000004.pt").exists()
    assert not (tmp_path / "b" / "checkpoints" / "ckpt-0000008.pt").exists()
    resumed = run_tganv2(*killed)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from ckpt-0000004.pt at iteration 4" in resumed.stdout
    assert not list((tmp_path / "b").rglob(".*tmp-*"))  # the killed save's temporary is gone
    records = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "loss_dis" in r] == list(range(1, 9))  # no duplicates

    g_a = load_file(str(tmp_path / "a" / "generator.safetensors"))
    g_b = load_file(str(tmp_path / "b" / "generator.safetensors"))
    assert g_a.keys() == g_b.keys()
    for key in g_a:
        assert torch.equal(g_a[key], g_b[key]), key
    ck_a = torch.load(tmp_path / "a" / "checkpoints" / "ckpt-0000008.pt", weights_only=True)
    ck_b = torch.load(tmp_path / "b" / "checkpoints" / "ckpt-0000008.pt", weights_only=True)
    for key, value in ck_a["trainer"]["discriminator"].items():
        assert torch.equal(value, ck_b["trainer"]["discriminator"][key]), key


def test_train_writes_artefacts_and_generate_renders_longer_videos(tmp_path):
    """The demo preset (3 levels: 16/32/64 px) at tiny width, then `generate` from its checkpoint."""
    out = tmp_path / "run"
    args = ["--iterations", "3", "--checkpoint-every", "2", "--sample-every", "2"]
    result = run_tganv2(*_train_args(out, *args, preset="demo-64"))
    assert result.returncode == 0, result.stderr
    # the initial weights (ckpt 0), then every 2 iterations and the last
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["ckpt-0000000.pt", "ckpt-0000002.pt", "ckpt-0000003.pt"]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = [r for r in records if "loss_dis" in r]
    assert [r["iteration"] for r in losses] == [1, 2, 3]
    assert all(np.isfinite(r[k]) for r in losses for k in ("loss_gen", "loss_dis", "loss_gp"))
    assert losses[-1]["lr"] == pytest.approx(0.0)  # linear decay to 0 over --iterations
    # the sample grid: 6 z rows × 3 level columns of 64-px, 8-frame videos (+2 px padding)
    frames = read_video(out / "samples" / "iter_0000002.mp4")
    assert frames.shape == (8, 6 * 66 + 2, 3 * 66 + 2, 3)
    assert (out / "samples" / "iter_0000002.gif").stat().st_size > 0
    snapshot = load_file(str(out / "generator.safetensors"))
    assert "blocks.4.bn2.running_var" in snapshot  # BN running statistics travel with the snapshot

    npz = tmp_path / "videos.npz"
    checkpoint = out / "checkpoints" / "ckpt-0000003.pt"
    gen = run_tganv2(
        "generate", "--checkpoint", str(checkpoint), "--n", "3", "--frames", "32", "--out", str(npz)
    )
    assert gen.returncode == 0, gen.stderr
    with np.load(npz, allow_pickle=False) as data:
        assert data["videos"].shape == (3, 3, 32, 64, 64) and data["videos"].dtype == np.uint8
    mp4 = tmp_path / "grid.mp4"
    grid = ["--n", "4", "--frames", "32", "--level", "2"]
    gen = run_tganv2("generate", "--checkpoint", str(out / "generator.safetensors"), *grid, "--out", str(mp4))
    assert gen.returncode == 0, gen.stderr
    assert read_video(mp4).shape == (32, 2 * 34 + 2, 2 * 34 + 2, 3)  # 2×2 grid of 32-px level-2 videos


def test_sigterm_writes_a_checkpoint_and_exits_with_128_plus_the_signal(tmp_path):
    out = tmp_path / "run"
    never = ["--iterations", "100000", "--checkpoint-every", "100000", "--sample-every", "100000"]
    proc = subprocess.Popen(
        [*TGANV2, *_train_args(out, *never)],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = out / "log.jsonl"

    def logged_iteration_3() -> bool:  # the run has logged iteration 3 (log_every 1)
        lines = log.read_text().splitlines() if log.exists() else []
        return any(json.loads(line).get("iteration") == 3 for line in lines if line.endswith("}"))

    deadline = time.time() + 300
    while not logged_iteration_3() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr  # stopped, not finished
    assert "checkpoint written" in stdout and "done." not in stdout
    initial, ckpt = sorted((out / "checkpoints").iterdir())  # the initial weights and the signal's
    assert initial.name == "ckpt-0000000.pt"
    state = torch.load(ckpt, weights_only=True)
    assert 3 <= state["trainer"]["iteration"] < 100000
    assert ckpt.name == f"ckpt-{state['trainer']['iteration']:07d}.pt"
    # no sample grid is written on the way out (only the one of iteration 0)
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["iter_0000000.gif", "iter_0000000.mp4"]


def _inject_nan_batch(monkeypatch) -> None:
    """A NaN pixel in the real batch of iteration 3."""
    from tganv2.training import step as step_module

    real_step = step_module.Trainer.step

    def step(self, next_real):
        if self.iteration + 1 != 3:
            return real_step(self, next_real)

        def poisoned():
            clips, labels = next_real()
            clips = clips.float() if clips.is_floating_point() else clips.float() / 127.5 - 1
            clips[0, 0, 0, 0, 0] = float("nan")
            return clips, labels

        return real_step(self, poisoned)

    monkeypatch.setattr(step_module.Trainer, "step", step)


def _inject_nan_gradient(monkeypatch) -> None:
    """A NaN in one generator gradient at iteration 3 (a hook on the parameter, before any all-reduce)."""
    from tganv2.training import step as step_module

    real_init = step_module.Trainer.__init__

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        weight = self.generator.fc.weight
        weight.register_hook(lambda g: g * float("nan") if self.iteration + 1 == 3 else g)

    monkeypatch.setattr(step_module.Trainer, "__init__", init)


@pytest.mark.parametrize(
    ("fault", "named", "message"),
    [
        ("lr", "ckpt-0000000.pt", "non-finite loss_gen, loss_dis, loss_gp, d_real, d_fake at iteration 2"),
        ("nan_batch", "ckpt-0000002.pt", "non-finite loss_dis, d_real at iteration 3"),
        ("nan_gradient", "ckpt-0000002.pt", "non-finite gradients at iteration 3"),
    ],
)
def test_divergence_stops_with_exit_3_naming_a_good_checkpoint(
    tmp_path, monkeypatch, capsys, fault, named, message
):
    """train.lr=1e10, a NaN in a real batch, a NaN gradient: the run stops (exit 3, one line) without saving
    the bad state, and the checkpoint it names has finite weights and generates non-constant videos."""
    from tganv2.cli import main

    overrides = ["train.lr=1e10"] if fault == "lr" else []
    if fault == "nan_batch":
        _inject_nan_batch(monkeypatch)
    if fault == "nan_gradient":
        _inject_nan_gradient(monkeypatch)
    out = tmp_path / "run"
    code = main(
        _train_args(out, "--iterations", "6", "--checkpoint-every", "2", "--sample-every", "100", *overrides)
    )
    err = capsys.readouterr().err
    assert code == 3, err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert f"The last good checkpoint is {out / 'checkpoints' / named};" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir())[-1] == named  # nothing newer saved
    state = torch.load(out / "checkpoints" / named, weights_only=True)["trainer"]
    for net in ("generator", "discriminator"):
        assert all(torch.isfinite(v).all() for v in state[net].values() if v.is_floating_point()), net
    npz = tmp_path / "videos.npz"
    assert (
        main(["generate", "--checkpoint", str(out / "checkpoints" / named), "--n", "2", "--out", str(npz)])
        == 0
    )
    with np.load(npz, allow_pickle=False) as data:
        videos = data["videos"]  # (2, 3, T, 64, 64) uint8
    assert videos.shape[:2] == (2, 3) and len(np.unique(videos)) > 10


def test_bad_input_is_one_line_without_traceback(tmp_path):
    result = run_tganv2(
        "generate", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x.mp4")
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"tganv2: error: generator file not found: {tmp_path}/nope.pt"
    ]
    result = run_tganv2(
        *_train_args(tmp_path / "r", "--data", str(tmp_path / "missing"), "--iterations", "1")
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "missing" in result.stderr
