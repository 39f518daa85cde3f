"""The official HDF5 + JSON layout and the clip sampling rule of reference.md §3.2."""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest
import torch

from tganv2.data import DataWarning, HDF5VideoDataset, to_float
from tganv2.errors import DataError


def write_official(folder, lengths, height, width, categories=None, name="train"):
    """An h5 + json pair as the official converter writes them.

    Pixel (f, c, y, x) encodes where it came from: channel 0 = frame index f, 1 = x, 2 = y.
    """
    total = sum(lengths)
    frame = np.arange(total, dtype=np.uint8)[:, None, None]
    image = np.empty((total, 3, height, width), np.uint8)
    image[:, 0] = frame
    image[:, 1] = np.arange(width, dtype=np.uint8)[None, None, :]
    image[:, 2] = np.arange(height, dtype=np.uint8)[None, :, None]
    with h5py.File(folder / f"{name}.h5", "w") as file:
        file.create_dataset("image", data=image)
    records, start = [], 0
    for i, length in enumerate(lengths):
        record = {"start": start, "end": start + length}
        if categories is not None:
            record["category"] = categories[i]
        records.append(record)
        start += length
    # pandas DataFrame.to_json(orient="records") style: compact array of objects
    (folder / f"{name}.json").write_text(json.dumps(records, separators=(",", ":")))
    return folder / f"{name}.h5"


def decode_position(clip):
    """(first frame, x0, y0, flipped) of a clip cut from ``write_official`` data."""
    frames, xs, ys = clip[0, :, 0, 0], clip[1, 0, 0], clip[2, 0, :, 0]
    flipped = bool(clip[1, 0, 0, 0] > clip[1, 0, 0, -1])
    x0 = int(clip[1, 0, 0, -1] if flipped else xs[0])
    assert torch.equal(frames, frames[0] + torch.arange(len(frames), dtype=torch.uint8))  # consecutive
    return int(frames[0]), x0, int(ys[0]), flipped


@pytest.fixture
def small_set(tmp_path):
    # three videos: 20, 17 and 16 frames; 24 x 32 frames, crop 16, xmargin 2 -> x0 in [2, 14]
    return write_official(tmp_path, [20, 17, 16], 24, 32, ["Drum", "ApplyEyeMakeup", "Drum"])


def test_training_start_crop_and_flip_ranges(small_set):
    dataset = HDF5VideoDataset(small_set, n_frames=16, size=16, train=True, xmargin=2, seed=3)
    assert len(dataset) == 3 and dataset.class_names == ["ApplyEyeMakeup", "Drum"] and dataset.n_classes == 2
    starts, x0s, flips = {0: set(), 1: set(), 2: set()}, [], []
    for epoch in range(150):
        for index in range(3):
            clip, label = dataset[(index, epoch)]
            assert clip.shape == (3, 16, 16, 16) and clip.dtype == torch.uint8
            assert label == [1, 0, 1][index]
            first, x0, y0, flipped = decode_position(clip)
            starts[index].add(first)
            x0s.append(x0)
            flips.append(flipped)
            assert y0 == (24 - 16) // 2
    # video 0 spans frames [0, 20): starts in [0, 20 - 17]; 20 - 16 = 4 is never drawn (numpy quirk)
    assert starts[0] == {0, 1, 2, 3}
    assert starts[1] == {20}  # 17 frames: [20, 37 - 17]
    assert starts[2] == {37}  # exactly 16 frames: the only clip
    assert set(x0s) == set(range(2, 32 - 16 - 2 + 1))
    assert 0.4 < np.mean(flips) < 0.6


def test_test_mode_is_centre_crop_no_flip_with_the_official_random_start(small_set):
    dataset = HDF5VideoDataset(small_set, n_frames=16, size=16, train=False, xmargin=2, seed=3)
    starts = set()
    for epoch in range(40):
        positions = [decode_position(dataset[(i, epoch)][0]) for i in range(3)]
        assert [p[1:] for p in positions] == [(8, 4, False)] * 3  # x0 = (32 - 16) // 2, y0 = (24 - 16) // 2
        assert positions[1][0] == 20 and positions[2][0] == 37
        starts.add(positions[0][0])
    assert starts == {0, 1, 2, 3}  # the official loader draws the start in test mode too


def test_reproducible_from_seed_epoch_index_and_picklable(small_set):
    dataset = HDF5VideoDataset(small_set, n_frames=16, size=16, xmargin=2, seed=5)
    first = [dataset[(i, e)][0] for e in range(4) for i in range(3)]
    clone = pickle.loads(pickle.dumps(dataset))  # what a DataLoader worker receives
    assert clone._file is None  # opened lazily in the worker
    assert all(torch.equal(a, clone[(i, e)][0]) for (e, i), a in zip(np.ndindex(4, 3), first))
    dataset.set_epoch(2)
    assert torch.equal(dataset[1][0], first[2 * 3 + 1])
    other_seed = HDF5VideoDataset(small_set, n_frames=16, size=16, xmargin=2, seed=6)
    assert any(not torch.equal(a, other_seed[(i, e)][0]) for (e, i), a in zip(np.ndindex(4, 3), first))
    epochs_differ = [decode_position(dataset[(0, e)][0]) for e in range(8)]
    assert len(set(epochs_differ)) > 1


def test_values_are_the_official_scaling(small_set):
    levels = torch.arange(256, dtype=torch.uint8)
    scaled = to_float(levels)
    assert scaled.dtype == torch.float32
    assert scaled[0] == -1 and scaled[128] == 0 and scaled[255] == 0.9921875
    clip, _ = HDF5VideoDataset(small_set, size=16, train=False)[0]
    torch.testing.assert_close(to_float(clip), (clip.double() - 128).float() / 128)


def test_real_ucf101_geometry(tmp_path):
    h5_path = write_official(tmp_path, [18, 17], 192, 256, ["A", "B"])
    train = HDF5VideoDataset(h5_path, size=192, train=True, seed=0)
    x0s = {decode_position(train[(i % 2, i)][0])[1] for i in range(120)}
    assert min(x0s) >= 4 and max(x0s) <= 60 and len(x0s) > 30
    clip, _ = HDF5VideoDataset(h5_path, size=192, train=False)[1]
    assert clip.shape == (3, 16, 192, 192)
    assert decode_position(clip) == (18, 32, 0, False)


def test_no_category_gives_label_minus_one(tmp_path):
    h5_path = write_official(tmp_path, [20, 20], 16, 16)
    dataset = HDF5VideoDataset(h5_path, size=16, xmargin=0, xflip=False)
    assert dataset.n_classes == 0 and dataset.class_names == []
    assert dataset[0][1] == -1


def test_too_short_videos_are_skipped_with_a_warning(tmp_path):
    h5_path = write_official(tmp_path, [20, 10, 20], 16, 16, ["a", "b", "c"])
    with pytest.warns(DataWarning, match="skipping 1 of 3 videos shorter than 16"):
        dataset = HDF5VideoDataset(h5_path, size=16, xmargin=0)
    assert len(dataset) == 2


def _one_line_error(match, **kwargs):
    with pytest.raises(DataError, match=match) as info:
        HDF5VideoDataset(**{"size": 16, "xmargin": 0, **kwargs})
    assert "\n" not in str(info.value)
    return str(info.value)


def test_wrong_layouts_give_one_line_errors(tmp_path):
    good = write_official(tmp_path, [20], 16, 16)
    with h5py.File(tmp_path / "noimage.h5", "w") as file:
        file.create_dataset("frames", data=np.zeros((4, 3, 16, 16), np.uint8))
    message = _one_line_error("no 'image' dataset", h5_path=tmp_path / "noimage.h5")
    assert "noimage.h5" in message
    with h5py.File(tmp_path / "ndim.h5", "w") as file:
        file.create_dataset("image", data=np.zeros((4, 16, 16), np.uint8))
    _one_line_error(r"must be \(frames, 3, H, W\) uint8", h5_path=tmp_path / "ndim.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    _one_line_error("not a readable HDF5 file", h5_path=tmp_path / "text.h5")
    _one_line_error("HDF5 file not found", h5_path=tmp_path / "missing.h5")
    json_path = tmp_path / "bad.json"
    json_path.write_text(json.dumps([{"start": 0}]))
    _one_line_error("record 0 must be an object with 'start' and 'end'", h5_path=good, json_path=json_path)
    json_path.write_text(json.dumps([{"start": 0, "end": 21}]))
    _one_line_error("ends at frame 21, past the 20 frames", h5_path=good, json_path=json_path)
    json_path.write_text(json.dumps({"start": 0, "end": 20}))
    _one_line_error("expected a JSON array", h5_path=good, json_path=json_path)
    json_path.write_text("{not json")
    _one_line_error("not valid JSON", h5_path=good, json_path=json_path)
    _one_line_error("JSON index not found", h5_path=good, json_path=tmp_path / "none.json")
    _one_line_error("smaller than the 32x32 crop", h5_path=good, size=32)
    _one_line_error("no room for a 16 crop with xmargin 4", h5_path=good, xmargin=4)
