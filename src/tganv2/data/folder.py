"""A folder of videos decoded on the fly (the raw-file counterpart of the HDF5 loader, reference.md §3.2).

Any tree of video files (.avi .mp4 .webm .mkv .mov .gif ...) and of frame folders (a leaf folder of
.png/.jpg frames is one video, as StyleGAN-V stores its datasets). Each item is a window of ``n_frames``
consecutive frames (random start in training, the first frames in test mode), centre-cropped to a square
and resized to ``size`` with antialiased bilinear interpolation (``torch.nn.functional.interpolate``).

Classes come from the UCF101 file name (``v_ApplyEyeMakeup_g08_c01.avi`` → ``ApplyEyeMakeup``) or else the
first sub-folder under the root; a video directly in the root has label -1.

Unreadable, truncated or too-short videos are skipped: one ``DataWarning`` naming the file (once per file
and process), the file is remembered and counted in ``n_skipped``, and the next readable video is returned
instead, so a training run never stops on a bad file. Only when no video at all can be read does
``__getitem__`` raise ``DataError``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .base import DataWarning, VideoDataset, category_from_path, item_rng
from .video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, count_frames, read_frames

__all__ = ["FolderVideoDataset", "find_videos", "resize_square"]


def find_videos(root: str | Path) -> list[Path]:
    """Video files and leaf frame folders under ``root``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of videos")
    videos: list[Path] = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        suffixes = [Path(name).suffix.lower() for name in files]
        videos += [Path(folder) / name for name, sfx in zip(files, suffixes) if sfx in VIDEO_SUFFIXES]
        if not subfolders and any(sfx in IMAGE_SUFFIXES for sfx in suffixes) and Path(folder) != root:
            videos.append(Path(folder))
    return sorted(videos)


def resize_square(frames: np.ndarray, size: int) -> Tensor:
    """uint8 ``(T, H, W, 3)`` → centre square crop → antialiased bilinear resize → ``(3, T, size, size)``."""
    _, height, width, _ = frames.shape
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    square = torch.from_numpy(np.ascontiguousarray(frames[:, y0 : y0 + side, x0 : x0 + side]))
    square = square.permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
    if side != size:
        square = F.interpolate(
            square.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        square = square.round_().clamp_(0, 255).to(torch.uint8)
    return square.permute(1, 0, 2, 3).contiguous()  # (T, 3, H, W) -> (3, T, H, W)


class FolderVideoDataset(VideoDataset):
    """Clips decoded on the fly from a tree of video files or frame folders."""

    def __init__(
        self,
        root: str | Path,  # folder searched recursively for videos and frame folders
        n_frames: int = 16,  # frames per clip (consecutive, native frame rate)
        size: int = 64,  # output is size x size after a centre square crop and resize
        train: bool = True,  # random window (and flip); False: the first n_frames frames
        xflip: bool = False,  # random horizontal flip in training
        seed: int = 0,  # with (epoch, index), determines every random choice
    ):
        self.root = Path(root)
        self.n_frames, self.size, self.train, self.xflip, self.seed = n_frames, size, train, xflip, seed
        self.paths = find_videos(self.root)
        if not self.paths:
            raise DataError(
                f"{self.root}: no videos found (expected files ending in "
                f"{' '.join(sorted(VIDEO_SUFFIXES))} or folders of .png/.jpg frames)"
            )
        categories = [category_from_path(p.relative_to(self.root)) for p in self.paths]
        self.class_names = sorted({c for c in categories if c is not None})
        label_of = {name: i for i, name in enumerate(self.class_names)}
        self.labels = [label_of[c] if c is not None else -1 for c in categories]
        self.skipped: dict[int, str] = {}  # index -> reason, in this process

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def __len__(self) -> int:
        return len(self.paths)

    def get_clip(self, index: int, epoch: int) -> tuple[Tensor, int]:
        for attempt in range(len(self)):
            candidate = (index + attempt) % len(self)
            if candidate in self.skipped:
                continue
            try:
                return self._load(candidate, epoch), self.labels[candidate]
            except Exception as e:  # any failure to decode this file means "skip it"
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                self.skipped[candidate] = reason
                warnings.warn(f"skipping {self.paths[candidate]}: {reason}", DataWarning, stacklevel=2)
        raise DataError(
            f"{self.root}: none of the {len(self)} videos could be read with at least {self.n_frames} frames"
        )

    def _load(self, index: int, epoch: int) -> Tensor:
        path = self.paths[index]
        rng = item_rng(self.seed, epoch, index)
        n_available = count_frames(path)  # metadata: may be an estimate, checked below
        frames = None
        if n_available >= self.n_frames:
            start = int(rng.integers(0, n_available - self.n_frames + 1)) if self.train else 0
            frames = read_frames(path, start, self.n_frames)
        if frames is None or len(frames) < self.n_frames:  # metadata was wrong: decode everything once
            every_frame = read_frames(path)
            if len(every_frame) < self.n_frames:
                raise DataError(f"only {len(every_frame)} frames, need {self.n_frames}")
            start = int(rng.integers(0, len(every_frame) - self.n_frames + 1)) if self.train else 0
            frames = every_frame[start : start + self.n_frames]
        clip = resize_square(frames, self.size)  # (3, T, size, size)
        if self.train and self.xflip and rng.random() < 0.5:
            clip = clip.flip(-1)
        return clip
