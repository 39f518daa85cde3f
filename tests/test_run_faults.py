"""A run you can trust: resume cannot silently change the run (issue 12 §3), and checkpoint files survive
faults (§4): kill -9 inside a save, stale temporaries, a damaged latest checkpoint, a full disk, and two
commands into one run directory. Each faulty run is finished by rerunning the same command and must end
with the generator of an uninterrupted run, bit for bit.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import TGANV2, child_env, tiny_args
from tganv2.cli import main
from tganv2.data.video import write_video
from tganv2.training import checkpoint as checkpoint_module

TINY = tiny_args("data.synthetic_size=64", "train.log_every=1")
RUN = ["--checkpoint-every", "2", "--sample-every", "100", "--threads", "1", "--no-progress"]


def _argv(out: Path, iterations: int, *extra: str) -> list[str]:
    return [
        "train",
        "--preset",
        "small-64",
        "--out",
        str(out),
        "--iterations",
        str(iterations),
        *RUN,
        *extra,
        *TINY,
    ]


def _train(capsys, out: Path, iterations: int, *extra: str) -> tuple[int, str, str]:
    code = main(_argv(out, iterations, *extra))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _same_generator(a: Path, b: Path) -> None:
    ga, gb = load_file(str(a / "generator.safetensors")), load_file(str(b / "generator.safetensors"))
    assert ga.keys() == gb.keys()
    for key in ga:
        assert torch.equal(ga[key], gb[key]), key


def _temporaries(out: Path) -> list[str]:
    return [p.name for p in out.rglob(".*tmp-*")]


def _loss_iterations(out: Path) -> list[int]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r["iteration"] for r in records if "loss_dis" in r]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[int, Path]:
    """Uninterrupted runs of 4 and 6 iterations (in-process, one thread)."""
    root = tmp_path_factory.mktemp("reference")
    runs = {}
    for iterations in (4, 6):
        assert main(_argv(root / str(iterations), iterations)) == 0
        runs[iterations] = root / str(iterations)
    return runs


# --- §3: the run directory records the run; a rerun may not change it silently ----------------------


def test_rerun_that_changes_the_maths_is_refused_and_accept_changes_is_logged(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(capsys, out, 4, "--stop-after", "2")[0] == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert recorded["train"]["lr"] == 2e-4 and recorded["train"]["batch"] == 4

    code, _, err = _train(capsys, out, 4, "train.lr=1e-3", "train.betas=[0.5,0.99]")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "train.betas [0.0, 0.9] → [0.5, 0.99], train.lr 0.0002 → 0.001" in err
    assert "--accept-changes" in err and "new --out" in err
    code, _, err = _train(
        capsys, out, 4, "--seed", "7", "--precision", "bf16", "train.r1_lambda=1", "train.n_dis=2"
    )
    assert code == 2
    for field in (
        "train.seed 1701 → 7",
        "train.precision fp32 → bf16",
        "train.r1_lambda",
        "train.n_dis 1 → 2",
    ):
        assert field in err
    code, _, err = _train(capsys, out, 4, "model.n_layers=2")
    assert code == 2 and "model.n_layers 1 → 2" in err
    assert yaml.safe_load((out / "config.yaml").read_text()) == recorded  # refused: nothing rewritten

    # settings that do not change the maths change freely: length, cadence, workers, threads
    code, stdout, _ = _train(capsys, out, 6, "--stop-after", "1", "--checkpoint-every", "3", "--workers", "0")
    assert code == 0 and "resuming from ckpt-0000002.pt" in stdout
    code, stdout, _ = _train(capsys, out, 6, "--accept-changes", "train.lr=1e-3")
    assert code == 0 and "accepted changed settings: train.lr 0.0002 → 0.001" in stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 1e-3
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    events = [r for r in records if r.get("event")]
    assert events[-1]["accepted"] == {"train.lr": [2e-4, 1e-3]} and events[-1]["iteration"] == 3
    assert events[0]["free"]["train.iterations"] == [4, 6]
    assert _loss_iterations(out) == [1, 2, 3, 4, 5, 6]


def test_a_run_recorded_before_a_field_existed_resumes_with_its_default(tmp_path, capsys):
    """A config.yaml without ``train.r1_every`` (a run started before it existed) reads as the default 1
    (``read_record`` passes it through ``config_from_dict``): the same command resumes, and asking for
    another value is refused naming the default as the old one."""
    out = tmp_path / "run"
    assert _train(capsys, out, 4, "--stop-after", "2")[0] == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    del recorded["train"]["r1_every"]
    (out / "config.yaml").write_text(yaml.safe_dump(recorded))
    code, _, err = _train(capsys, out, 4, "train.r1_every=4")
    assert code == 2 and "train.r1_every 1 → 4" in err
    code, stdout, _ = _train(capsys, out, 4)
    assert code == 0 and "resuming from ckpt-0000002.pt" in stdout
    assert _loss_iterations(out) == [1, 2, 3, 4]


def _video_folder(root: Path) -> Path:
    root.mkdir()
    rng = torch.Generator().manual_seed(0)
    for name in ("a", "b", "c", "d"):
        frames = torch.randint(0, 255, (10, 32, 32, 3), generator=rng, dtype=torch.uint8).numpy()
        write_video(root / f"{name}.mp4", frames, fps=8)
    return root


def test_rerun_without_data_uses_the_recorded_data_and_a_changed_dataset_is_refused(
    tmp_path, capsys, monkeypatch
):
    videos = _video_folder(tmp_path / "videos")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code, _, err = _train(capsys, out, 3, "--stop-after", "1", "--data", "videos")  # a relative path
    assert code == 0, err
    assert yaml.safe_load((out / "config.yaml").read_text())["data"]["path"] == str(videos.resolve())
    fingerprint = json.loads((out / "dataset.json").read_text())
    assert fingerprint["kind"] == "FolderVideoDataset" and fingerprint["length"] == 4
    assert fingerprint["bytes"] == sum(p.stat().st_size for p in videos.iterdir())

    code, stdout, err = _train(capsys, out, 3, "--stop-after", "1")  # no --data: the recorded folder
    assert code == 0, err
    assert json.loads((out / "dataset.json").read_text()) == fingerprint

    code, _, err = _train(capsys, out, 3, "--data", "synthetic")
    assert code == 2 and f"data.path {videos.resolve()} → null" in err
    os.utime(videos / "a.mp4", ns=(1, 10**18))  # the same path, other files
    code, _, err = _train(capsys, out, 3)
    assert code == 2 and "data stamp" in err and len(err.strip().splitlines()) == 1


# --- §4: checkpoint files under faults ---------------------------------------------------------------


@pytest.mark.parametrize("stage", ["write", "replace", "prune", "snapshot"])
def test_kill_during_save_then_rerun_equals_an_uninterrupted_run(stage, tmp_path, capsys, reference):
    """SIGKILL inside save_checkpoint of iteration 4 at `stage` (the run waits there on a file the test
    reads); the rerun of the same command leaves no temporary and ends with the reference generator."""
    out, marker = tmp_path / "run", tmp_path / "paused"
    env = child_env(TGANV2_TEST_PAUSE_AT=f"4:{stage}", TGANV2_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen(
        [*TGANV2, *_argv(out, 4)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert marker.exists(), proc.stderr.read().decode()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    if stage == "write":
        assert _temporaries(out) == [".ckpt-0000004.pt.tmp-" + marker.read_text().strip()]

    code, stdout, err = _train(capsys, out, 4)
    assert code == 0, err
    expected = "ckpt-0000004.pt" if stage in ("prune", "snapshot") else "ckpt-0000002.pt"
    assert f"resuming from {expected}" in stdout
    assert _temporaries(out) == []
    _same_generator(out, reference[4])
    assert _loss_iterations(out) == [1, 2, 3, 4]


def test_stale_temporaries_are_removed_and_a_damaged_checkpoint_falls_back(tmp_path, capsys, reference):
    out = tmp_path / "run"
    assert _train(capsys, out, 6, "--stop-after", "4")[0] == 0  # the lr schedule of a 6-iteration run
    (out / "checkpoints" / ".ckpt-0000006.pt.tmp-999999").write_bytes(b"x" * 1000)
    (out / ".generator.safetensors.tmp-999999").write_bytes(b"x")
    (out / "checkpoints" / "ckpt-0000004.pt").write_bytes(b"")  # 0 bytes

    code, stdout, err = _train(capsys, out, 6)
    assert code == 0, err
    (warning,) = err.strip().splitlines()
    assert warning.startswith(
        f"tganv2: warning: {out / 'checkpoints' / 'ckpt-0000004.pt'}: cannot read checkpoint ("
    )
    assert warning.endswith("; moved it to ckpt-0000004.pt.damaged and resuming from ckpt-0000002.pt")
    assert "resuming from ckpt-0000002.pt at iteration 2" in stdout
    assert _temporaries(out) == []
    _same_generator(out, reference[6])
    assert _loss_iterations(out) == [1, 2, 3, 4, 5, 6]


def test_no_loadable_checkpoint_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert _train(capsys, out, 2)[0] == 0
    for path in (out / "checkpoints").iterdir():  # the initial ckpt-0 and ckpt-2: truncated
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    code, _, err = _train(capsys, out, 4)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "no checkpoint loads (ckpt-0000002.pt, ckpt-0000000.pt are damaged" in err
    assert "move them away to start the run over" in err and "Traceback" not in err


def test_full_disk_is_one_line_keeps_earlier_checkpoints_and_a_rerun_continues(
    tmp_path, capsys, monkeypatch, reference
):
    out = tmp_path / "run"
    write = checkpoint_module._RecordingFile.write

    def full_at_4(self, data):
        if self.iteration == 4 and self.written > 0:
            self.error = OSError(errno.ENOSPC, "No space left on device")
            raise self.error
        return write(self, data)

    monkeypatch.setattr(checkpoint_module._RecordingFile, "write", full_at_4)
    code, _, err = _train(capsys, out, 4)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"{out / 'checkpoints' / 'ckpt-0000004.pt'}: no space left on device (about " in err
    assert "MiB needed" in err and "earlier checkpoints are intact" in err
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["ckpt-0000000.pt", "ckpt-0000002.pt"]
    assert (
        checkpoint_module.load_checkpoint(out / "checkpoints" / "ckpt-0000002.pt")["trainer"]["iteration"]
        == 2
    )

    monkeypatch.setattr(checkpoint_module._RecordingFile, "write", write)  # space freed
    code, stdout, err = _train(capsys, out, 4)
    assert code == 0, err
    assert "resuming from ckpt-0000002.pt" in stdout and _temporaries(out) == []
    _same_generator(out, reference[4])


_HOLD_LOCK = """
import fcntl, os, sys, time
f = open(sys.argv[1], "a+")
fcntl.lockf(f.fileno(), fcntl.LOCK_EX)
f.seek(0); f.truncate(); f.write(f"PID {os.getpid()} (tganv2 train)\\n"); f.flush()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_command_into_a_locked_out_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out / ".lock")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    code, _, err = _train(capsys, out, 1)
    assert code == 2
    assert err.strip().splitlines() == [
        f"tganv2: error: {out} is in use by PID {holder.pid} (tganv2 train); wait for it to finish or use "
        "another --out"
    ]
    holder.kill()  # -9: the lock file stays, naming a dead PID
    holder.wait()
    holder.stdout.close()
    assert f"PID {holder.pid}" in (out / ".lock").read_text()
    code, _, err = _train(capsys, out, 1)
    assert code == 0, err
