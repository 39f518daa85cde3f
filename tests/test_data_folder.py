"""Folder of videos decoded on the fly: classes, windows, crop/resize, and skipping bad files."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tganv2.data import DataWarning, FolderVideoDataset, write_video
from tganv2.errors import DataError


def moving_frames(n_frames, height=40, width=56, seed=0):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 6)
    t = np.arange(n_frames, dtype=np.float32)[:, None, None]
    red = 128 + 100 * np.sin(xs / 7 + t / 3 + phase)
    return np.stack([red, 128 + 0 * red, 255 - red], axis=-1).clip(0, 255).astype(np.uint8)


def write_frame_folder(folder, n_frames, height=24, width=40):
    """PNG frames whose colour encodes the frame index; columns outside the centre square are red."""
    folder.mkdir(parents=True)
    margin = (width - height) // 2
    for i in range(n_frames):
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:, :, 0] = 255
        frame[:, margin : margin + height] = (0, 10 * i, 100)
        Image.fromarray(frame).save(folder / f"{i}.png")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "videos"
    write_video(root / "ClassA" / "one.mp4", moving_frames(30, seed=1), fps=25)
    write_video(root / "ClassB" / "two.avi", moving_frames(24, seed=2), fps=25)
    write_video(root / "v_Drum_g01_c01.avi", moving_frames(20, seed=3), fps=25)  # UCF101 name at the root
    write_frame_folder(root / "ClassC" / "frames_of_one_video", 20)
    write_video(root / "short.mp4", moving_frames(5), fps=25)
    (root / "ClassB" / "zero.mp4").write_bytes(b"")
    (root / "ClassB" / "notes.txt").write_text("not a video")
    return root


def test_finds_videos_and_classes(tree):
    dataset = FolderVideoDataset(tree, n_frames=16, size=32, train=False)
    names = [p.relative_to(tree).as_posix() for p in dataset.paths]
    assert names == [
        "ClassA/one.mp4",
        "ClassB/two.avi",
        "ClassB/zero.mp4",
        "ClassC/frames_of_one_video",
        "short.mp4",
        "v_Drum_g01_c01.avi",
    ]
    assert dataset.class_names == ["ClassA", "ClassB", "ClassC", "Drum"]
    assert dataset.labels == [0, 1, 1, 2, -1, 3]


def test_bad_and_short_files_are_skipped_once_and_counted(tree):
    dataset = FolderVideoDataset(tree, n_frames=16, size=32, train=True, seed=1)
    with pytest.warns(DataWarning) as record:
        clips = [dataset[(i, epoch)] for epoch in range(2) for i in range(len(dataset))]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2  # once per bad file, although each was requested twice
    assert any("zero.mp4" in m for m in messages)
    assert any("short.mp4" in m and "only 5 frames" in m for m in messages)
    assert dataset.n_skipped == 2
    for clip, _ in clips:
        assert clip.shape == (3, 16, 32, 32) and clip.dtype == torch.uint8
    # the zero-byte file (index 2) is replaced by the next readable video (the frame folder, label 2)
    assert clips[2][1] == 2 and torch.equal(clips[2][0], clips[3][0])
    assert clips[4][1] == 3  # short.mp4 -> v_Drum_g01_c01.avi


def test_corrupt_and_truncated_files(tmp_path):
    root = tmp_path / "videos"
    good = write_video(root / "good.mp4", moving_frames(20), fps=25)
    (root / "garbage.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    full = write_video(tmp_path / "full.mp4", moving_frames(40), fps=25).read_bytes()
    (root / "truncated.mp4").write_bytes(full[: len(full) // 3])
    dataset = FolderVideoDataset(root, n_frames=16, size=16, train=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        clips = [dataset[i][0] for i in range(3)]
    assert sorted(str(w.message).split(":")[0] for w in record) == [
        f"skipping {root / 'garbage.avi'}",
        f"skipping {root / 'truncated.mp4'}",
    ]
    assert dataset.n_skipped == 2 and all(torch.equal(c, clips[1]) for c in clips)
    assert dataset.paths[1] == good


def test_window_start_and_centre_square_crop(tmp_path):
    write_frame_folder(tmp_path / "clips" / "a", 20)
    train = FolderVideoDataset(tmp_path / "clips", n_frames=16, size=12, train=True, seed=0)
    starts = set()
    for epoch in range(60):
        clip, label = train[(0, epoch)]
        assert label == -1
        frame_ids = (clip[1, :, 0, 0].int() // 10).tolist()
        assert frame_ids == list(range(frame_ids[0], frame_ids[0] + 16))
        starts.add(frame_ids[0])
        assert clip[0].max() == 0  # the red side columns were cropped away
    assert starts == {0, 1, 2, 3, 4}
    test = FolderVideoDataset(tmp_path / "clips", n_frames=16, size=12, train=False)
    assert test[0][0][1, :, 5, 5].tolist() == [10 * i for i in range(16)]


def test_xflip_and_reproducibility(tree):
    flipping = FolderVideoDataset(tree / "ClassA", n_frames=8, size=32, train=True, xflip=True, seed=2)
    again = FolderVideoDataset(tree / "ClassA", n_frames=8, size=32, train=True, xflip=True, seed=2)
    plain = FolderVideoDataset(tree / "ClassA", n_frames=8, size=32, train=True, xflip=False, seed=2)
    flipped = []
    for epoch in range(16):
        clip = flipping[(0, epoch)][0]
        assert torch.equal(clip, again[(0, epoch)][0])
        unflipped = plain[(0, epoch)][0]  # same window: the flip is drawn after the start
        assert torch.equal(clip, unflipped) or torch.equal(clip, unflipped.flip(-1))
        flipped.append(not torch.equal(clip, unflipped))
    assert 0 < sum(flipped) < 16


def test_empty_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="no videos found"):
        FolderVideoDataset(tmp_path)
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no videos found"):
        FolderVideoDataset(tmp_path)
    with pytest.raises(DataError, match="not a directory"):
        FolderVideoDataset(tmp_path / "missing")
    (tmp_path / "zero.mp4").write_bytes(b"")
    dataset = FolderVideoDataset(tmp_path)
    with pytest.warns(DataWarning), pytest.raises(DataError, match="none of the 1 videos could be read"):
        dataset[0]
