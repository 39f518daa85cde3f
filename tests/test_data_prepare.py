"""`tganv2 data prepare` end to end on tiny generated trees, resume, failures, `tganv2 data info`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TGANV2, run_tganv2
from tganv2.cli import main
from tganv2.data import DataWarning, HDF5VideoDataset, read_video, write_video
from tganv2.data import prepare as prepare_module
from tganv2.data.guards import prepare_lock
from tganv2.data.prepare import mask_boxes, parse_size, resize_frames
from tganv2.errors import DataError

CLASSES = ["ApplyEyeMakeup", "Drumming", "YoYo"]


def _prepare_argv(source: str, videos, out, *extra: str) -> list[str]:
    """``tganv2 data prepare SOURCE --videos VIDEOS --out OUT EXTRA...`` as an argument list."""
    return ["data", "prepare", source, "--videos", str(videos), "--out", str(out), *extra]


def clip_frames(n_frames, seed, height=30, width=40):
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    value = 128 + 100 * np.sin(xs / 6 + ys / 9 + t / 3 + seed)
    return np.stack([value, 255 - value, 40 * seed + 0 * value], axis=-1).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ucf_tree(tmp_path_factory):
    """UCF101-like: class folders of XviD .avi files and ucfTrainTestlist split 1."""
    root = tmp_path_factory.mktemp("ucf")
    train_lines, test_lines = [], []
    for c, name in enumerate(CLASSES):
        for group, lines in (("g01", train_lines), ("g02", train_lines), ("g08", test_lines)):
            file = f"v_{name}_{group}_c01.avi"
            write_video(root / "UCF-101" / name / file, clip_frames(18 + c, seed=c + len(lines)), fps=25)
            lines.append(f"{name}/{file}" + (f" {c + 1}" if lines is train_lines else ""))
    (root / "UCF-101" / "Drumming" / "v_Drumming_g03_c01.avi").write_bytes(b"\x00RIFF broken" * 50)
    train_lines += ["Drumming/v_Drumming_g03_c01.avi 2", "YoYo/v_YoYo_g04_c01.avi 3"]  # corrupt, missing
    splits = root / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "trainlist01.txt").write_text("\n".join(train_lines) + "\n")
    (splits / "testlist01.txt").write_text("\n".join(test_lines) + "\n")
    return root


def test_ucf101_end_to_end_with_parallel_workers(ucf_tree, tmp_path, capsys):
    out = tmp_path / "ucf101_24x32"
    splits = ["--splits", str(ucf_tree), "--split", "1"]
    argv = _prepare_argv("ucf101", ucf_tree / "UCF-101", out, *splits, "--size", "24x32", "--workers", "2")
    with pytest.warns(DataWarning) as warned:  # each printed as one line by the CLI (warnings_as_lines)
        assert main(argv) == 0
    captured = capsys.readouterr()
    assert "train: converted 6, skipped 0 (done in an earlier run), failed 2" in captured.out
    assert "test: converted 3, skipped 0 (done in an earlier run), failed 0" in captured.out
    assert "failed: " in captured.out and "v_YoYo_g04_c01.avi" in captured.out
    messages = [str(w.message) for w in warned]
    assert len(messages) == 2 and any("v_Drumming_g03_c01.avi: Invalid data found" in m for m in messages)
    assert "Traceback" not in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["test.h5", "test.json", "train.h5", "train.json"]

    records = json.loads((out / "train.json").read_text())
    assert [r["category"] for r in records] == [c for c in CLASSES for _ in range(2)]  # split-list order
    lengths = [r["end"] - r["start"] for r in records]
    assert lengths == [18, 18, 19, 19, 20, 20] and records[0]["start"] == 0
    with h5py.File(out / "train.h5", "r") as file:
        image = file["image"]
        assert image.shape == (sum(lengths), 3, 24, 32) and image.dtype == np.uint8
        source = ucf_tree / "UCF-101" / "Drumming" / "v_Drumming_g01_c01.avi"
        expected = resize_frames(read_video(source), 24, 32)  # (T, 3, 24, 32)
        np.testing.assert_array_equal(image[records[2]["start"] : records[2]["end"]], expected)

    dataset = HDF5VideoDataset(out / "train.h5", n_frames=16, size=24, xmargin=2, seed=0)
    assert dataset.class_names == CLASSES and len(dataset) == 6
    clip, label = dataset[3]
    assert clip.shape == (3, 16, 24, 24) and label == 1

    assert main(argv[:-2] + ["--workers", "1"]) == 0  # a rerun finds both splits done
    assert capsys.readouterr().out.count("nothing to do") == 2


def test_resume_after_a_crash_reuses_finished_parts(ucf_tree, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    splits = ["--splits", str(ucf_tree / "ucfTrainTestlist")]
    argv = _prepare_argv("ucf101", ucf_tree / "UCF-101", out, *splits, "--size", "24x32", "--workers", "1")

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "_write_split", crash)
    assert main(argv) == 130  # interrupted while writing train.h5: the parts are already on disk
    assert not (out / "train.h5").exists() and len(list((out / ".parts").rglob("*.npy"))) == 6
    assert not list(out.glob("*.tmp"))
    monkeypatch.undo()
    capsys.readouterr()
    assert main(argv) == 0
    output = capsys.readouterr().out
    assert "train: converted 0, skipped 6 (done in an earlier run), failed 2" in output
    assert "test: converted 3, skipped 0" in output
    assert not (out / ".parts").exists()
    with h5py.File(out / "train.h5", "r") as file:
        assert file["image"].shape[0] == 18 + 18 + 19 + 19 + 20 + 20


def test_missing_split_file_is_a_one_line_error(ucf_tree, tmp_path):
    splits = ["--splits", str(tmp_path), "--split", "2"]
    result = run_tganv2(*_prepare_argv("ucf101", ucf_tree, tmp_path / "out", *splits), timeout=120)
    assert result.returncode == 2
    missing = tmp_path / "trainlist02.txt"
    assert result.stderr.strip().splitlines() == [
        f"tganv2: error: {missing}: split file not found (expected the ucfTrainTestlist folder)"
    ]


def test_prepare_folder_counts_failures_and_uses_subfolders(tmp_path, capsys):
    videos = tmp_path / "videos"
    write_video(videos / "cats" / "a.mp4", clip_frames(20, 1), fps=25)
    write_video(videos / "dogs" / "b.avi", clip_frames(17, 2), fps=25)
    (videos / "dogs" / "empty.mp4").write_bytes(b"")
    write_video(videos / "dogs" / "tiny.mp4", clip_frames(4, 3), fps=25)
    (videos / "dogs" / "loop.mp4").symlink_to(videos / "dogs" / "loop.mp4")  # a symlink loop named *.mp4
    assert main(_prepare_argv("folder", videos, tmp_path / "out", "--size", "16x20", "--workers", "1")) == 0
    captured = capsys.readouterr()
    assert "train: converted 2, skipped 0 (done in an earlier run), failed 3" in captured.out
    assert "only 4 frames, need at least 16" in captured.out
    assert "loop.mp4: unreadable symlink (Too many levels of symbolic links)" in captured.out
    records = json.loads((tmp_path / "out" / "train.json").read_text())
    assert records == [
        {"start": 0, "end": 20, "category": "cats"},
        {"start": 20, "end": 37, "category": "dogs"},
    ]

    assert main(["data", "info", str(tmp_path / "out" / "train.h5")]) == 0
    info = capsys.readouterr().out
    assert (
        "videos: 2" in info and "frames: 37" in info and "classes: 2" in info and "resolution: 16x20" in info
    )
    assert main(["data", "info", str(tmp_path / "out" / "train.json")]) == 0
    assert "videos: 2" in capsys.readouterr().out
    assert main(["data", "info", str(videos)]) == 0
    info = capsys.readouterr().out
    assert "videos: 3" in info and "classes: 2" in info and "resolution: 30x40" in info  # readable ones
    assert "frames: 41" in info and "empty.mp4 (Invalid data found when processing input)" in info
    assert "unreadable: 2: loop.mp4 (unreadable symlink (Too many levels of symbolic links))" in info
    assert main(["data", "info", "synthetic"]) == 0
    assert "classes: 9" in capsys.readouterr().out
    assert main(["data", "info", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.startswith("tganv2: error:")
    assert main(_prepare_argv("folder", tmp_path / "nothing", tmp_path)) == 2


def write_png_video(folder, frames):
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{i:03d}.png")


def test_faceforensics_crops_each_frame_to_its_mask_box(tmp_path, capsys):
    n, height, width = 17, 40, 48
    frames = np.zeros((n, height, width, 3), np.uint8)
    masks = np.zeros((n, height, width, 3), np.uint8)
    frames[..., 0] = 255  # red outside the face
    for t in range(n):
        step = t if t != 5 else 4  # frame 5 (empty mask) keeps frame 4's position
        top, left = 2 + step, 4 + step  # the face box moves; 20 x 12 box -> a 20 x 20 square around it
        frames[t, top : top + 20, left : left + 20] = (0, 255, 0)
        masks[t, top : top + 20, left + 4 : left + 16] = 200
    masks[5] = 3  # below the threshold: reuses the previous frame's box
    masks[5, 0, 0] = 5
    write_png_video(tmp_path / "videos" / "test" / "000", frames)
    write_png_video(tmp_path / "masks" / "test" / "000", masks)
    frames[0, :, :] = (0, 255, 0)  # the train video has no mask at all -> failed
    write_png_video(tmp_path / "videos" / "train" / "001", frames)
    write_png_video(tmp_path / "videos" / "train" / "002", frames)
    write_png_video(tmp_path / "masks" / "002", masks)  # flat mask folder: matched by name
    out = tmp_path / "face16px"
    masks = ["--masks", str(tmp_path / "masks")]
    argv = _prepare_argv("faceforensics", tmp_path / "videos", out, *masks, "--size", "16", "--workers", "1")
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "train: converted 1, skipped 0 (done in an earlier run), failed 1" in captured.out
    assert "no mask video named 001" in captured.out
    with h5py.File(out / "test.h5", "r") as file:
        image = file["image"][:]
    assert image.shape == (n, 3, 16, 16)
    assert image[:, 0].max() == 0 and image[:, 1].min() == 255  # only the green face box, every frame
    assert json.loads((out / "test.json").read_text()) == [{"start": 0, "end": n}]  # no category


def test_mask_boxes_square_clamped_and_filled(tmp_path):
    masks = np.zeros((3, 20, 30, 3), np.uint8)
    masks[0, 2:6, 0:10] = 255  # 4 x 10 box at the left edge -> 10 x 10 square clamped to the frame
    masks[2, 15:20, 25:30] = 255  # 5 x 5 box in the corner
    write_png_video(tmp_path / "m", masks)
    assert mask_boxes(tmp_path / "m") == [(0, 0, 10), (0, 0, 10), (15, 25, 5)]
    write_png_video(tmp_path / "empty", masks[:1] * 0)
    with pytest.raises(DataError, match="mask is empty"):
        mask_boxes(tmp_path / "empty")


def test_parse_size_and_resize():
    assert parse_size("192x256") == (192, 256) and parse_size("256") == (256, 256)
    for bad in ("x", "192x", "0x5", "1x2x3"):
        with pytest.raises(DataError, match="expected ROWSxCOLS"):
            parse_size(bad)
    constant = np.full((2, 30, 40, 3), 77, np.uint8)
    assert (resize_frames(constant, 12, 16) == 77).all()
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8)[None, None, :, None], (1, 8, 1, 3))
    resized = torch.from_numpy(resize_frames(ramp, 8, 10)).int()
    assert (resized[0, 0, 0].diff() > 0).all()  # monotone, clamped to uint8


def test_two_runs_into_one_out_folder_the_second_stops_with_one_line(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", clip_frames(16, 1), fps=25)
    out = tmp_path / "out"
    with prepare_lock(out):  # a first run holds the folder (flock on OUT/.prepare.lock)
        result = run_tganv2(*_prepare_argv("folder", videos, out, "--size", "16"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"tganv2: error: {out}: another `tganv2 data prepare` (pid {os.getpid()}) is writing into this "
        "folder; wait for it to finish or choose another --out"
    ]
    assert not (out / "train.h5").exists()
    # released: the next run goes ahead
    assert main(_prepare_argv("folder", videos, out, "--size", "16", "--workers", "1")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.h5", "train.json"]


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, capsys):
    """The part file's temporary name points at /dev/full, where every write fails with ENOSPC."""
    videos = tmp_path / "videos"
    source = write_video(videos / "a.mp4", clip_frames(16, 1), fps=25)
    out = tmp_path / "out"
    part = prepare_module._part_path(out, "train", 16, 16, source, "folder")
    temporary = part.with_name(part.name + ".tmp")
    temporary.parent.mkdir(parents=True)
    temporary.symlink_to("/dev/full")
    assert main(_prepare_argv("folder", videos, out, "--size", "16", "--workers", "1")) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("tganv2:")] == [
        f"tganv2: error: {temporary}: no space left on device; free some space and rerun "
        "(finished videos are kept; the conversion needs about twice the final size)"
    ]
    assert not temporary.exists() and not (out / ".prepare.lock").exists()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = open(f"/proc/{entry}/status").read()
            except OSError:
                continue
            if f"\nPPid:\t{pid}\n" in status:
                found.append(int(entry))
    return found


def _cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline").read()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (PID 1 of a container may not reap it)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_data_prepare_is_killed(tmp_path):
    videos = tmp_path / "videos"
    for i in range(4):
        write_video(videos / f"v{i}.avi", clip_frames(150, i, height=60, width=80), fps=25)
    proc = subprocess.Popen(
        [*TGANV2, *_prepare_argv("folder", videos, tmp_path / "out", "--workers", "2", "--size", "192x256")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        workers = []
        while len(workers) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            workers = [pid for pid in _children(proc.pid) if "resource_tracker" not in _cmdline(pid)]
        assert len(workers) == 2, "the pool did not start"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("flag, value", [("--workers", "0"), ("--workers", "-2"), ("--min-frames", "0")])
def test_non_positive_counts_are_one_line_errors(tmp_path, capsys, flag, value):
    assert main(_prepare_argv("folder", tmp_path, tmp_path / "out", flag, value)) == 2
    assert capsys.readouterr().err.splitlines() == [f"tganv2: error: {flag} must be >= 1, got {value}"]
    assert not (tmp_path / "out").exists()
