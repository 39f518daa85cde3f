"""Folder of videos decoded on the fly: classes, windows, crop/resize, and skipping bad files."""

from __future__ import annotations

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


def test_finds_videos_and_classes_and_drops_unreadable_ones_at_open(tree):
    with pytest.warns(DataWarning) as record:
        dataset = FolderVideoDataset(tree, n_frames=16, size=32, train=False)
    names = [p.relative_to(tree).as_posix() for p in dataset.paths]
    assert names == ["ClassA/one.mp4", "ClassB/two.avi", "ClassC/frames_of_one_video", "v_Drum_g01_c01.avi"]
    assert dataset.class_names == ["ClassA", "ClassB", "ClassC", "Drum"]
    assert dataset.labels == [0, 1, 2, 3]
    messages = [str(w.message) for w in record]
    assert len(messages) == 2  # one line for the other extensions, one for the skipped videos
    assert "ignored 1 files with other extensions (.txt x1)" in messages[0]
    assert "skipping 2 of 6 videos" in messages[1] and "short.mp4: only 5 frames, need 16" in messages[1]
    assert "zero.mp4: Invalid data found when processing input" in messages[1]
    assert "Errno" not in messages[1]  # PyAV's [Errno 1094995529] prefix is dropped
    assert dataset.n_skipped == 2 and dataset.n_failed == 0


def test_six_bad_files_in_a_row_do_not_inflate_their_neighbour(tmp_path):
    """Today's bug: each bad slot returned the next readable video, so one file filled 7 of 24 indices."""
    root = tmp_path / "videos"
    for i in range(18):
        write_video(root / f"good{i:02d}.mp4", moving_frames(16, height=16, width=16, seed=i), fps=25)
    full = write_video(tmp_path / "full.mp4", moving_frames(40, height=16, width=16), fps=25).read_bytes()
    (root / "bad0.mp4").write_bytes(b"")
    (root / "bad1.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "bad2.mp4").write_bytes(full[: len(full) // 3])  # the moov atom is at the end: gone
    write_video(root / "bad3.mp4", moving_frames(5, height=16, width=16), fps=25)  # too short
    (root / "bad4.mp4").symlink_to(root / "bad4.mp4")  # a symlink loop named *.mp4
    (root / "bad5.mp4").symlink_to(tmp_path / "missing.mp4")  # a broken link
    with pytest.warns(DataWarning, match="skipping 6 of 24 videos") as record:
        dataset = FolderVideoDataset(root, n_frames=16, size=16, train=False)
    assert len(record) == 1
    assert len(dataset) == 18 and all(p.name.startswith("good") for p in dataset.paths)
    assert "bad4.mp4: unreadable symlink (Too many levels of symbolic links)" in str(record[0].message)
    assert set(dataset.skipped) == {root / f"bad{i}{'.avi' if i == 1 else '.mp4'}" for i in range(6)}
    # every index is its own video: 18 distinct clips
    clips = [dataset[i][0] for i in range(len(dataset))]
    assert len({clip.numpy().tobytes() for clip in clips}) == 18


def test_a_video_that_fails_while_decoding_is_replaced_uniformly(tmp_path):
    root = tmp_path / "videos"
    for i in range(10):
        write_video(root / f"c{i % 2}" / f"good{i}.mp4", moving_frames(16, 16, 16, seed=i), fps=25)
    full = write_video(tmp_path / "long.avi", moving_frames(120, 32, 32), fps=25).read_bytes()
    (root / "c0" / "late.avi").write_bytes(full[: len(full) // 3])  # header says 120 frames, 1 decodes
    dataset = FolderVideoDataset(root, n_frames=16, size=16, train=True, seed=3)
    bad = [p.name for p in dataset.paths].index("late.avi")
    assert dataset.n_skipped == 0  # it passes the probe at open
    with pytest.warns(DataWarning, match="late.avi: only 1 frames, need 16") as record:
        first = [dataset[(bad, epoch)] for epoch in range(30)]
    assert len(record) == 1 and dataset.n_failed == 1 and dataset.n_skipped == 1
    # each stand-in is a whole other video, drawn with (seed, epoch, index): spread over many videos
    served = []
    for epoch, (clip, label) in enumerate(first):
        same = [i for i in range(len(dataset)) if i != bad and torch.equal(clip, dataset[(i, epoch)][0])]
        assert len(same) == 1 and dataset.labels[same[0]] == label
        served.append(same[0])
    assert len(set(served)) >= 6 and max(served.count(i) for i in served) <= 10
    again = FolderVideoDataset(root, n_frames=16, size=16, train=True, seed=3)
    with pytest.warns(DataWarning):
        assert torch.equal(again[(bad, 4)][0], first[4][0])  # reproducible


def test_corrupt_and_truncated_files(tmp_path):
    root = tmp_path / "videos"
    good = write_video(root / "good.mp4", moving_frames(20), fps=25)
    (root / "garbage.avi").write_bytes(np.random.default_rng(0).bytes(5000))
    full = write_video(tmp_path / "full.mp4", moving_frames(40), fps=25).read_bytes()
    (root / "truncated.mp4").write_bytes(full[: len(full) // 3])
    with pytest.warns(DataWarning, match="skipping 2 of 3 videos") as record:
        dataset = FolderVideoDataset(root, n_frames=16, size=16, train=False)
    assert f"{root / 'garbage.avi'}: " in str(record[0].message)
    assert f"{root / 'truncated.mp4'}: " in str(record[0].message)
    assert dataset.paths == [good] and dataset.n_skipped == 2


def test_symlinked_class_folders_are_followed_and_loops_walked_once(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "Juggle"
    write_video(elsewhere / "a.mp4", moving_frames(16, 16, 16, seed=1), fps=25)
    root = tmp_path / "videos"
    write_video(root / "Swim" / "b.mp4", moving_frames(16, 16, 16, seed=2), fps=25)
    (root / "Juggle").symlink_to(elsewhere, target_is_directory=True)  # a symlinked class folder
    (root / "Swim" / "again").symlink_to(root, target_is_directory=True)  # a folder loop
    dataset = FolderVideoDataset(root, n_frames=16, size=16)
    assert [p.relative_to(root).as_posix() for p in dataset.paths] == ["Juggle/a.mp4", "Swim/b.mp4"]
    assert dataset.class_names == ["Juggle", "Swim"]


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
    with pytest.raises(DataError, match="none of the 1 videos could be read .*zero.mp4: Invalid data"):
        FolderVideoDataset(tmp_path)
