"""open_dataset auto-detection, and the sharded, seeded DataLoader with (index, epoch) keys."""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest
import torch

from tganv2.config import load_preset
from tganv2.data import (
    FolderVideoDataset,
    HDF5VideoDataset,
    SyntheticVideoDataset,
    build_dataset,
    make_loader,
    open_dataset,
    write_video,
)
from tganv2.errors import DataError


def write_h5(path, n_videos=12, length=20, height=16, width=24):
    """Frames whose channel 0 holds the frame number, so a clip says where it came from."""
    total = n_videos * length
    image = np.zeros((total, 3, height, width), np.uint8)
    image[:, 0] = (np.arange(total) % 256).astype(np.uint8)[:, None, None]
    image[:, 1] = np.arange(width, dtype=np.uint8)
    with h5py.File(path, "w") as file:
        file.create_dataset("image", data=image)
    records = [
        {"start": i * length, "end": (i + 1) * length, "category": f"c{i % 3}"} for i in range(n_videos)
    ]
    path.with_suffix(".json").write_text(json.dumps(records))
    return path


def test_open_dataset_detects_the_kind(tmp_path):
    h5 = write_h5(tmp_path / "train.h5")
    assert isinstance(open_dataset(h5, size=16), HDF5VideoDataset)
    assert isinstance(open_dataset(h5.with_suffix(".json"), size=16), HDF5VideoDataset)
    assert isinstance(open_dataset(tmp_path, size=16), HDF5VideoDataset)  # a folder with train.h5
    shutil.copy(h5, tmp_path / "test.h5")
    shutil.copy(h5.with_suffix(".json"), tmp_path / "test.json")
    test = open_dataset(tmp_path, size=16, train=False)
    assert test.h5_path.name == "test.h5" and not test.train
    videos = tmp_path / "raw"
    write_video(videos / "a" / "clip.mp4", np.zeros((20, 16, 16, 3), np.uint8))
    folder = open_dataset(videos, n_frames=8, size=16)
    assert isinstance(folder, FolderVideoDataset) and folder.class_names == ["a"]
    with pytest.raises(DataError, match="no such file or directory"):
        open_dataset(tmp_path / "nothing")
    (tmp_path / "weights.npz").write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported dataset file"):
        open_dataset(tmp_path / "weights.npz")


def test_build_dataset_from_config():
    cfg = load_preset("small-64", ["data.synthetic_size=32"])
    dataset = build_dataset(cfg)
    assert isinstance(dataset, SyntheticVideoDataset) and len(dataset) == 32
    assert dataset[0][0].shape == (3, cfg.model.n_frames, 64, 64)
    assert dataset.seed == cfg.train.seed


def _epoch(dataset, epoch, batch=4, world_size=1, **options):
    """The batches of one epoch: the endless loader started at that epoch's first batch."""
    per_epoch = len(dataset) // world_size // batch
    loader = make_loader(
        dataset, batch=batch, world_size=world_size, start_batch=epoch * per_epoch, **options
    )
    stream = iter(loader)
    return [tuple(t.clone() for t in next(stream)) for _ in range(per_epoch)]


def test_ranks_get_disjoint_shards_and_epochs_reshuffle(tmp_path):
    dataset = SyntheticVideoDataset(n_clips=24, n_frames=2, size=8, seed=0)
    first_frames = {i: dataset[i][0] for i in range(24)}

    def indices(batches):
        found = []
        for clips, _ in batches:
            for clip in clips:
                found += [i for i, ref in first_frames.items() if torch.equal(ref, clip)]
        return found

    rank0 = dict(num_workers=0, seed=1, rank=0, world_size=2)
    rank1 = dict(num_workers=0, seed=1, rank=1, world_size=2)
    shard0, shard1 = indices(_epoch(dataset, 0, **rank0)), indices(_epoch(dataset, 0, **rank1))
    assert len(shard0) == len(shard1) == 12
    assert sorted(shard0 + shard1) == list(range(24))
    assert indices(_epoch(dataset, 1, **rank0)) != shard0  # reshuffled in the next epoch
    assert indices(_epoch(dataset, 0, **rank0)) == shard0  # and reproducible


def test_workers_give_the_same_batches_as_the_main_process(tmp_path):
    dataset = HDF5VideoDataset(write_h5(tmp_path / "train.h5"), n_frames=8, size=16, xmargin=2, seed=4)
    with_workers = make_loader(dataset, batch=4, num_workers=2, seed=7)
    assert with_workers.persistent_workers and not with_workers.pin_memory  # CPU-only machine
    for epoch in (0, 1):
        a = _epoch(dataset, epoch, num_workers=0, seed=7)
        b = _epoch(dataset, epoch, num_workers=2, seed=7)
        assert len(a) == len(b) == 3
        for (clips_a, labels_a), (clips_b, labels_b) in zip(a, b):
            assert clips_a.dtype == torch.uint8 and clips_a.shape == (4, 3, 8, 16, 16)
            assert torch.equal(clips_a, clips_b) and torch.equal(labels_a, labels_b)


def test_endless_batches_walk_epochs_and_augmentation_changes(tmp_path):
    dataset = HDF5VideoDataset(write_h5(tmp_path / "train.h5", n_videos=4), n_frames=8, size=16, xmargin=2)
    stream = iter(make_loader(dataset, batch=4, num_workers=0, seed=0))
    batches = [next(stream) for _ in range(3)]  # one batch per epoch
    # the same four videos every epoch, but other start frames / crops
    assert all(sorted(labels.tolist()) == [0, 0, 1, 2] for _, labels in batches)
    assert not torch.equal(batches[0][0], batches[1][0])
    resumed = iter(make_loader(dataset, batch=4, num_workers=0, seed=0, start_batch=2))
    assert torch.equal(next(resumed)[0], batches[2][0])


def test_too_small_dataset_is_a_data_error():
    with pytest.raises(DataError, match="too few for a batch of 8"):
        make_loader(SyntheticVideoDataset(n_clips=10), batch=8, num_workers=0, seed=0, world_size=2)
