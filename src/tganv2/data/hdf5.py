"""The official HDF5 + JSON layout and its clip loader (reference.md §3.1, §3.2).

Layout (what ``scripts/make_ucf101.py`` writes and ``tganv2 data prepare`` writes):
  * ``NAME.h5`` holds one dataset ``image``: ``(total_frames, 3, H, W)`` uint8 RGB, every video's frames
    concatenated along axis 0;
  * ``NAME.json`` is a JSON array of records ``{"start": int, "end": int, "category": str}`` (pandas
    ``to_json(orient="records")``); ``end`` is exclusive; ``category`` is optional (FaceForensics has none).

Clip loading (``HDF5VideoDataset``, the official ``UCF101Dataset`` defaults):
  * 16 consecutive frames starting uniformly in [start, end − 17] (numpy's exclusive upper bound: the last
    possible start, end − 16, is never drawn), in training and in test mode alike, as in the official code;
    a video of exactly 16 frames gives its only clip (the official code would fail on it);
  * y0 = (H − size)//2; training: x0 uniform over the integers in [xmargin, W − size − xmargin] and a
    horizontal flip with probability 0.5 per clip; test: centre crop x0 = (W − size)//2, no flip;
    ``center_crop=True`` keeps the training start and flip but crops the centre (FVD's real clips);
  * ``clips_per_class=N`` keeps N videos of each category (``choose_per_class``; 0 = all);
  * no resizing: a stored resolution smaller than the crop is an error.
The h5 file is opened lazily in each process (h5py handles are not fork-safe).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

from ..errors import DataError
from .base import DataWarning, VideoDataset, choose_per_class, item_rng

__all__ = ["HDF5VideoDataset", "read_records", "hdf5_image_shape", "hdf5_summary"]


def hdf5_image_shape(h5_path: str | Path) -> tuple[int, int, int, int]:
    """Shape ``(frames, 3, H, W)`` of the ``image`` dataset, checking the official layout."""
    h5_path = Path(h5_path)
    if not h5_path.is_file():
        raise DataError(f"{h5_path}: HDF5 file not found")
    try:
        with h5py.File(h5_path, "r") as file:
            if "image" not in file or not isinstance(file["image"], h5py.Dataset):
                raise DataError(
                    f"{h5_path}: no 'image' dataset (expected image of shape (frames, 3, H, W) uint8; "
                    f"found {sorted(file.keys())})"
                )
            image = file["image"]
            shape, dtype = tuple(image.shape), image.dtype
    except OSError as e:
        raise DataError(f"{h5_path}: not a readable HDF5 file ({e})") from None
    if len(shape) != 4 or shape[1] != 3 or dtype != np.uint8:
        raise DataError(f"{h5_path}: 'image' must be (frames, 3, H, W) uint8, got {dtype} {shape}")
    return shape  # type: ignore[return-value]


def read_records(json_path: str | Path, total_frames: int | None = None) -> list[dict]:
    """The JSON index: a list of ``{start, end[, category]}`` records, checked against the h5 length."""
    json_path = Path(json_path)
    if not json_path.is_file():
        raise DataError(f"{json_path}: JSON index not found (expected the .json written next to the .h5)")
    try:
        records = json.loads(json_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{json_path}: not valid JSON ({e})") from None
    if not isinstance(records, list):
        raise DataError(f"{json_path}: expected a JSON array of records {{start, end, category}}")
    for i, record in enumerate(records):
        if not isinstance(record, dict) or "start" not in record or "end" not in record:
            raise DataError(
                f"{json_path}: record {i} must be an object with 'start' and 'end' (got {record!r})"
            )
        start, end = record["start"], record["end"]
        if not (isinstance(start, int) and isinstance(end, int)) or not 0 <= start < end:
            raise DataError(
                f"{json_path}: record {i} needs integers 0 <= start < end, got {start!r}, {end!r}"
            )
        if total_frames is not None and end > total_frames:
            raise DataError(
                f"{json_path}: record {i} ends at frame {end}, past the {total_frames} frames in the h5 file"
            )
    return records


def _default_json(h5_path: Path) -> Path:
    return h5_path.with_suffix(".json")


class HDF5VideoDataset(VideoDataset):
    """Clips from the official HDF5 + JSON layout; see the module docstring for the sampling rule."""

    def __init__(
        self,
        h5_path: str | Path,  # the .h5 file with the 'image' dataset
        json_path: str | Path | None = None,  # the JSON index; default: same stem, .json
        n_frames: int = 16,  # frames per clip (consecutive, stride 1)
        size: int = 192,  # square crop size in pixels (no resizing)
        train: bool = True,  # random x-crop and flip; False: centre crop, no flip (start random in both)
        xmargin: int = 4,  # training x0 is in [xmargin, W - size - xmargin]
        xflip: bool = True,  # random horizontal flip in training
        seed: int = 0,  # with (epoch, index), determines every random choice
        center_crop: bool = False,  # training start and flip, but x0 = (W - size)//2 (no random x-crop)
        clips_per_class: int = 0,  # keep this many videos of each category (0 = all)
    ):
        self.h5_path = Path(h5_path)
        self.center_crop = center_crop
        self.json_path = Path(json_path) if json_path is not None else _default_json(self.h5_path)
        self.n_frames, self.size, self.train = n_frames, size, train
        self.xmargin, self.xflip, self.seed = xmargin, xflip, seed
        total, _, self.height, self.width = hdf5_image_shape(self.h5_path)
        if self.height < size or self.width < size:
            raise DataError(
                f"{self.h5_path}: frames are {self.height}x{self.width}, smaller than the {size}x{size} crop "
                f"(convert again with a larger --size)"
            )
        if train and not center_crop and self.width - size - xmargin < xmargin:
            raise DataError(
                f"{self.h5_path}: width {self.width} leaves no room for a {size} crop with xmargin {xmargin}"
            )
        records = read_records(self.json_path, total)
        self.class_names = sorted({str(r["category"]) for r in records if r.get("category") is not None})
        label_of = {name: i for i, name in enumerate(self.class_names)}
        long_enough = [r for r in records if r["end"] - r["start"] >= n_frames]
        if len(long_enough) < len(records):
            warnings.warn(
                f"{self.json_path}: skipping {len(records) - len(long_enough)} of {len(records)} videos "
                f"shorter than {n_frames} frames",
                DataWarning,
                stacklevel=2,
            )
        if not long_enough:
            raise DataError(f"{self.json_path}: no video has at least {n_frames} frames")
        # (len, 3): start, end (exclusive), label
        labels = [-1 if r.get("category") is None else label_of[str(r["category"])] for r in long_enough]
        self.videos = np.array(
            [(r["start"], r["end"], label) for r, label in zip(long_enough, labels)], dtype=np.int64
        )
        if clips_per_class:
            self.videos = self.videos[choose_per_class(self.videos[:, 2], clips_per_class, seed)]
        self.total_frames = total
        self._file: h5py.File | None = None
        self._file_pid: int | None = None

    def __len__(self) -> int:
        return len(self.videos)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"], state["_file_pid"] = None, None  # each worker opens its own handle
        return state

    def _images(self) -> h5py.Dataset:
        if self._file is None or self._file_pid != os.getpid():
            self._file = h5py.File(self.h5_path, "r")
            self._file_pid = os.getpid()
        return self._file["image"]

    def crop_origin_and_start(self, index: int, epoch: int) -> tuple[int, int, int, bool]:
        """``(first_frame, y0, x0, flip)`` of item ``index`` in ``epoch``: the whole sampling rule."""
        start, end, _ = (int(v) for v in self.videos[index])
        y0 = (self.height - self.size) // 2
        rng = item_rng(self.seed, epoch, index)
        # numpy's exclusive upper bound, as in the official loader: starts in [start, end - n_frames - 1]
        first = start + int(rng.integers(0, max(1, end - self.n_frames - start)))
        if not self.train:
            return first, y0, (self.width - self.size) // 2, False
        if self.center_crop:
            x0 = (self.width - self.size) // 2
        else:
            x0 = int(rng.integers(self.xmargin, self.width - self.size - self.xmargin + 1))
        flip = bool(self.xflip and rng.random() < 0.5)
        return first, y0, x0, flip

    def get_clip(self, index: int, epoch: int) -> tuple[Tensor, int]:
        first, y0, x0, flip = self.crop_origin_and_start(index, epoch)
        size = self.size
        frames = self._images()[
            first : first + self.n_frames, :, y0 : y0 + size, x0 : x0 + size
        ]  # (T, C, H, W)
        if flip:
            frames = frames[..., ::-1]
        clip = torch.from_numpy(np.ascontiguousarray(frames.transpose(1, 0, 2, 3)))  # (C, T, H, W)
        return clip, int(self.videos[index, 2])


def hdf5_summary(h5_path: str | Path, json_path: str | Path | None = None) -> dict:
    """Videos, frames, classes and resolution of an HDF5 file (and its JSON index when present)."""
    h5_path = Path(h5_path)
    total, channels, height, width = hdf5_image_shape(h5_path)
    json_path = Path(json_path) if json_path is not None else _default_json(h5_path)
    summary = {"path": str(h5_path), "frames": total, "resolution": f"{height}x{width}", "channels": channels}
    if json_path.is_file():
        records = read_records(json_path, total)
        lengths = [r["end"] - r["start"] for r in records]
        summary.update(
            videos=len(records),
            classes=len({r.get("category") for r in records if r.get("category") is not None}),
            frames_per_video=f"min {min(lengths)}, mean {np.mean(lengths):.1f}, max {max(lengths)}"
            if lengths
            else "-",
        )
    else:
        summary.update(videos="? (no JSON index)", classes="?")
    return summary
