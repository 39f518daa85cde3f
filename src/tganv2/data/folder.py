"""A folder (or zip) of videos decoded on the fly (the raw-file counterpart of the HDF5 loader, §3.2).

Any tree of video files (the extensions of ``VIDEO_SUFFIXES``: .avi .mp4 .mkv .webm .ts .ogv .3gp .m4v .mpg
.flv .wmv ...) and of frame folders (a leaf folder of .png/.jpg frames is one video, as StyleGAN-V stores its
datasets), or a ``.zip`` of frame folders (StyleGAN-V / DIGAN, read in place: ``zipped.py``). Symlinked
files and folders are followed; a folder reached twice (a symlink loop) is walked once. Files with other
extensions are ignored with one warning naming how many of each. Each item is a window of ``n_frames``
consecutive frames (random start in training, the first frames in test mode), centre-cropped to a square
and resized to ``size`` with antialiased bilinear interpolation (``torch.nn.functional.interpolate``).

Classes come from the UCF101 file name (``v_ApplyEyeMakeup_g08_c01.avi`` → ``ApplyEyeMakeup``) or else the
first sub-folder under the root; a video directly in the root has label -1.

Unreadable videos are dropped from the index:
  * at open, every video is probed in a thread pool (opened, first frame decoded, frame count checked
    against ``n_frames``); the ones that fail are not in the dataset, and one ``DataWarning`` says how
    many were skipped and why (``skipped`` maps each to its reason);
  * a video that opens but fails later, while decoding a clip, is remembered as failed in that process
    (one ``DataWarning``) and its slot is served by another video drawn uniformly with the item's
    (seed, epoch, index), so no neighbouring file gets a double share. Only when no video at all can be
    read does ``__getitem__`` raise ``DataError``.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError
from .base import DataWarning, VideoDataset, category_from_path, choose_per_class, item_rng
from .video import VIDEO_SUFFIXES, count_frames, probe_video, read_error_reason, read_frames
from .zipped import IMAGE_SUFFIXES, is_zip_dataset, zip_videos

__all__ = ["FolderVideoDataset", "VideoScan", "scan_videos", "find_videos", "resize_square"]

PROBE_THREADS = 8  # PyAV releases the GIL while it opens and decodes


@dataclass
class VideoScan:
    videos: list[Path] = field(default_factory=list)  # video files and frame folders, sorted
    unusable: list[tuple[Path, str]] = field(default_factory=list)  # (path, reason): loops, broken links
    ignored: Counter = field(default_factory=Counter)  # extension -> files that are neither

    def warn_ignored(self, root: Path, stacklevel: int = 3) -> None:
        if self.ignored:
            counts = ", ".join(f"{suffix} x{n}" for suffix, n in sorted(self.ignored.items()))
            warnings.warn(
                f"{root}: ignored {sum(self.ignored.values())} files with other extensions ({counts}); "
                f"videos are read from {' '.join(sorted(VIDEO_SUFFIXES))} files and folders of "
                f"{'/'.join(sorted(IMAGE_SUFFIXES))} frames",
                DataWarning,
                stacklevel=stacklevel,
            )


def _not_a_regular_file(path: Path) -> str:
    """Why ``path`` cannot be read as a file ('' when it can): symlink loops, broken links, FIFOs."""
    try:
        mode = os.stat(path).st_mode  # follows symlinks
    except OSError as e:
        if path.is_symlink():
            return f"unreadable symlink ({e.strerror})"
        return e.strerror or type(e).__name__
    return "" if stat.S_ISREG(mode) else "not a regular file"


def scan_videos(root: str | Path) -> VideoScan:
    """Video files and frame folders under ``root`` (a directory or a zip of frame folders)."""
    root = Path(root)
    if is_zip_dataset(root):
        return VideoScan(videos=zip_videos(root))
    if not root.is_dir():
        raise DataError(f"{root}: not a directory of videos (or a .zip of frame folders)")
    scan, visited = VideoScan(), set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:
            subfolders[:] = []
            continue
        if (info.st_dev, info.st_ino) in visited:  # reached again through a symlink: a loop or a duplicate
            subfolders[:] = []
            continue
        visited.add((info.st_dev, info.st_ino))
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        images = []
        for name in files:
            if name.startswith("."):  # .DS_Store, AppleDouble ._x.mp4 files
                continue
            path, suffix = Path(folder) / name, Path(name).suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                images.append(suffix)
            elif suffix in VIDEO_SUFFIXES:
                reason = _not_a_regular_file(path)
                if reason:
                    scan.unusable.append((path, reason))
                else:
                    scan.videos.append(path)
            else:
                scan.ignored[suffix or "(none)"] += 1
        if images and not subfolders and Path(folder) != root:
            scan.videos.append(Path(folder))
        else:
            scan.ignored.update(images)
    scan.videos.sort()
    return scan


def find_videos(root: str | Path) -> list[Path]:
    """Readable-looking video files and leaf frame folders under ``root``, sorted by path; warns once
    about files with other extensions and about files that cannot be opened at all (symlink loops)."""
    scan = scan_videos(root)
    scan.warn_ignored(Path(root))
    for path, reason in scan.unusable:
        warnings.warn(f"skipping {path}: {reason}", DataWarning, stacklevel=2)
    return scan.videos


def _probe(path: Path, n_frames: int) -> str:
    """'' when ``path`` has at least ``n_frames`` decodable frames, else the reason."""
    try:
        available = probe_video(path, n_frames)
    except Exception as e:  # any failure to open or decode means "skip it"
        return read_error_reason(e)
    return "" if available >= n_frames else f"only {available} frames, need {n_frames}"


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
    """Clips decoded on the fly from a tree (or zip) of video files or frame folders."""

    def __init__(
        self,
        root: str | Path,  # folder searched recursively for videos and frame folders, or a .zip
        n_frames: int = 16,  # frames per clip (consecutive, native frame rate)
        size: int = 64,  # output is size x size after a centre square crop and resize
        train: bool = True,  # random window (and flip); False: the first n_frames frames
        xflip: bool = False,  # random horizontal flip in training
        seed: int = 0,  # with (epoch, index), determines every random choice
        clips_per_class: int = 0,  # keep this many videos of each class (0 = all); see choose_per_class
    ):
        self.root = Path(root)
        self.n_frames, self.size, self.train, self.xflip, self.seed = n_frames, size, train, xflip, seed
        scan = scan_videos(self.root)
        scan.warn_ignored(self.root)
        if not scan.videos and not scan.unusable:
            raise DataError(
                f"{self.root}: no videos found (expected files ending in "
                f"{' '.join(sorted(VIDEO_SUFFIXES))} or folders of .png/.jpg frames)"
            )
        with ThreadPoolExecutor(min(PROBE_THREADS, max(1, len(scan.videos)))) as pool:
            reasons = list(pool.map(lambda path: _probe(path, n_frames), scan.videos))
        self.skipped: dict[Path, str] = dict(scan.unusable)  # path -> reason, at open and in this process
        self.skipped.update((path, reason) for path, reason in zip(scan.videos, reasons) if reason)
        self.paths = [path for path, reason in zip(scan.videos, reasons) if not reason]
        n_found = len(scan.videos) + len(scan.unusable)
        if not self.paths:
            path, reason = next(iter(self.skipped.items()))
            raise DataError(
                f"{self.root}: none of the {n_found} videos could be read with at least {n_frames} frames "
                f"(e.g. {path}: {reason})"
            )
        if self.skipped:
            shown = "; ".join(f"{path}: {reason}" for path, reason in list(self.skipped.items())[:3])
            more = f"; and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            warnings.warn(
                f"{self.root}: skipping {len(self.skipped)} of {n_found} videos that cannot be read or have "
                f"fewer than {n_frames} frames: {shown}{more}",
                DataWarning,
                stacklevel=2,
            )
        categories = [category_from_path(p.relative_to(self.root)) for p in self.paths]
        self.class_names = sorted({c for c in categories if c is not None})
        label_of = {name: i for i, name in enumerate(self.class_names)}
        self.labels = [label_of[c] if c is not None else -1 for c in categories]
        if clips_per_class:
            keep = choose_per_class(self.labels, clips_per_class, seed)
            self.paths = [self.paths[i] for i in keep]
            self.labels = [self.labels[i] for i in keep]
        self._failed: set[int] = set()  # indices that opened but failed while decoding, in this process

    @property
    def n_skipped(self) -> int:
        """Videos skipped at open plus those that failed later in this process."""
        return len(self.skipped)

    @property
    def n_failed(self) -> int:
        return len(self._failed)

    def __len__(self) -> int:
        return len(self.paths)

    def get_clip(self, index: int, epoch: int) -> tuple[Tensor, int]:
        rng = None
        while True:
            if index not in self._failed:
                try:
                    return self._load(index, epoch), self.labels[index]
                except Exception as e:  # any failure to decode this file means "skip it"
                    reason = read_error_reason(e)
                    self._failed.add(index)
                    self.skipped[self.paths[index]] = reason
                    warnings.warn(f"skipping {self.paths[index]}: {reason}", DataWarning, stacklevel=2)
            alive = [i for i in range(len(self)) if i not in self._failed]
            if not alive:
                raise DataError(
                    f"{self.root}: none of the {len(self)} videos could be read with at least "
                    f"{self.n_frames} frames"
                )
            if rng is None:
                rng = np.random.default_rng([self.seed % 2**63, epoch % 2**63, index, 1])
            index = alive[int(rng.integers(len(alive)))]  # a uniform stand-in, not the next file

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
