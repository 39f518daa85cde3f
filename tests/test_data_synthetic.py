"""The built-in synthetic dataset: determinism, shapes, labels, and that shape and motion are visible."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tganv2.data import CLASS_NAMES, SyntheticVideoDataset, open_dataset


def object_mask(clip: torch.Tensor) -> np.ndarray:
    """(T, H, W) bool: the bright saturated object (backgrounds are dark: value <= 0.51)."""
    return clip.numpy().max(axis=0) > 180


def test_same_seed_same_clips_other_seed_other_clips():
    a = SyntheticVideoDataset(n_clips=20, n_frames=8, size=32, seed=1)
    b = SyntheticVideoDataset(n_clips=20, n_frames=8, size=32, seed=1)
    c = SyntheticVideoDataset(n_clips=20, n_frames=8, size=32, seed=2)
    held_out = SyntheticVideoDataset(n_clips=20, n_frames=8, size=32, seed=1, train=False)
    for i in range(20):
        clip, label = a[i]
        assert torch.equal(clip, b[i][0]) and label == b[i][1]
        assert torch.equal(clip, a[(i, 7)][0])  # no epoch dependence
        assert not torch.equal(clip, c[i][0])
        assert not torch.equal(clip, held_out[i][0])


@pytest.mark.parametrize("size,n_frames", [(16, 4), (32, 16), (48, 20), (64, 16), (96, 8)])
def test_shapes_and_labels(size, n_frames):
    dataset = SyntheticVideoDataset(n_clips=18, n_frames=n_frames, size=size, seed=0)
    assert len(dataset) == 18 and dataset.n_classes == 9 and dataset.class_names == CLASS_NAMES
    labels = []
    for i in range(18):
        clip, label = dataset[i]
        assert clip.shape == (3, n_frames, size, size) and clip.dtype == torch.uint8
        labels.append(label)
    assert sorted(labels) == sorted(list(range(9)) * 2)  # balanced: label = index % 9


def test_objects_move_every_frame():
    dataset = SyntheticVideoDataset(n_clips=27, n_frames=16, size=32, seed=4)
    for i in range(27):
        clip = dataset[i][0].int()
        frame_change = (clip[:, 1:] - clip[:, :-1]).abs().sum(dim=(0, 2, 3))  # (T - 1,)
        assert (frame_change > 0).all()


@pytest.mark.parametrize("size", [32, 64])
def test_motion_types_are_distinguishable(size):
    dataset = SyntheticVideoDataset(n_clips=90, n_frames=16, size=size, seed=0)
    for i in range(90):
        clip, label = dataset[i]
        mask = object_mask(clip)  # (T, H, W)
        assert mask.sum(axis=(1, 2)).min() > 0.02 * size * size  # the object is always in view
        ys, xs = np.mgrid[0:size, 0:size]
        cy = (mask * ys).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
        cx = (mask * xs).sum(axis=(1, 2)) / mask.sum(axis=(1, 2))
        x_travel, y_travel = np.ptp(cx), np.ptp(cy)
        motion = CLASS_NAMES[label].split("-")[1]
        if motion == "horizontal":
            assert x_travel > 0.25 * size and y_travel < 0.05 * size
        elif motion == "vertical":
            assert y_travel > 0.25 * size and x_travel < 0.05 * size
        else:
            assert x_travel > 0.15 * size and y_travel > 0.15 * size


def test_shapes_are_distinguishable_by_fill_ratio():
    dataset = SyntheticVideoDataset(n_clips=90, n_frames=4, size=64, seed=0)
    fill = {"square": [], "circle": [], "triangle": []}
    for i in range(90):
        clip, label = dataset[i]
        mask = object_mask(clip)[0]
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        fill[CLASS_NAMES[label].split("-")[0]].append(mask.sum() / box)
    assert min(fill["square"]) > 0.9  # 1 for a square
    assert 0.7 < min(fill["circle"]) and max(fill["circle"]) < 0.88  # pi / 4
    assert 0.4 < min(fill["triangle"]) and max(fill["triangle"]) < 0.62  # 1 / 2


def test_open_dataset_defaults_to_synthetic():
    dataset = open_dataset(None, n_frames=8, size=32, seed=3, n_clips=10)
    assert isinstance(dataset, SyntheticVideoDataset) and len(dataset) == 10
    assert dataset[0][0].shape == (3, 8, 32, 32)
    assert isinstance(open_dataset("synthetic"), SyntheticVideoDataset)
