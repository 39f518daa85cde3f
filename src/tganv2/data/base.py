"""The one dataset contract shared by every dataset (reference.md §3.2).

``dataset[i]`` returns ``(clip, label)``: ``clip`` a uint8 tensor ``(C, T, H, W)`` and ``label`` an int
(-1 when unknown). ``to_float(clip)`` maps it to the model's range, (x − 128)/128 ∈ [−1, 0.9921875], and
``to_uint8`` maps the model's output back (clip(x·128 + 128), truncated as the official previews; exact
inverse of ``to_float``). Every dataset has ``n_classes``, ``class_names`` and ``__len__``; the datasets
with classes take ``clips_per_class`` (keep N items of each class, chosen by ``choose_per_class``).

Randomness (crop position, flip, window start) comes from a NumPy generator seeded with
``(seed, epoch, index)`` for each item, so a clip depends only on those three numbers: not on the worker
that loads it, the number of workers or the order of requests. ``dataset[i]`` uses ``dataset.epoch``
(``set_epoch``); the loader from ``make_loader`` asks for ``dataset[(i, epoch)]`` instead, because
persistent DataLoader workers hold their own copy of the dataset and never see ``set_epoch``.
"""

from __future__ import annotations

import re
from pathlib import PurePath

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "DataWarning",
    "VideoDataset",
    "to_float",
    "to_uint8",
    "item_rng",
    "category_from_path",
    "choose_per_class",
]


class DataWarning(UserWarning):
    """A data-side problem worth one line: skipped files (corrupt, truncated, too short, other extensions)
    or a fallback (GIF without PyAV); the message names the file. The CLI prints it as one line."""


def to_float(clip: Tensor) -> Tensor:
    """uint8 clips ``(..., C, T, H, W)`` → float32 (x − 128)/128 in [−1, 0.9921875] (official scaling)."""
    return (clip.to(torch.float32) - 128.0) / 128.0


def to_uint8(videos: Tensor) -> Tensor:
    """Model-range videos ``(..., C, T, H, W)`` → uint8 clip(x·128 + 128), truncated (official previews)."""
    return (videos.detach().float() * 128 + 128).clamp_(0, 255).to(torch.uint8)


def choose_per_class(labels: list[int] | np.ndarray, per_class: int, seed: int = 0) -> np.ndarray:
    """Sorted indices that keep ``per_class`` items of each label (all of a smaller class).

    The choice is a seeded permutation within each class, so it is deterministic and not just the first
    files in name order (which in UCF101 are the same actor's clips). Label -1 counts as one more class.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([seed % 2**63, per_class])
    keep = [rng.permutation(np.flatnonzero(labels == label))[:per_class] for label in np.unique(labels)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator for one item: a function of (seed, epoch, index) only."""
    return np.random.default_rng([seed % 2**63, epoch % 2**63, index % 2**63])


_UCF101_NAME = re.compile(r"^v_([^_]+)_g\d+_c\d+", re.IGNORECASE)


def category_from_path(relative_path: str | PurePath) -> str | None:
    """Class of a video from its path relative to the dataset root.

    UCF101-style names ``v_ApplyEyeMakeup_g08_c01.avi`` give the second underscore-separated token (as the
    official converter does); otherwise the first sub-folder under the root; ``None`` for a file (or frame
    folder) directly in the root.
    """
    relative_path = PurePath(relative_path)
    match = _UCF101_NAME.match(relative_path.name)
    if match:
        return match.group(1)
    return relative_path.parts[0] if len(relative_path.parts) > 1 else None


class VideoDataset(torch.utils.data.Dataset):
    """Base for the contract above: key parsing (``i`` or ``(i, epoch)``), epochs and class names."""

    seed: int = 0
    epoch: int = 0
    class_names: list[str] = []

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_failed(self) -> int:
        """Items of the index that failed while loading in this process (served by a stand-in)."""
        return 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _split_key(self, key) -> tuple[int, int]:
        if isinstance(key, (tuple, list)):
            index, epoch = int(key[0]), int(key[1])
        else:
            index, epoch = int(key), self.epoch
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} clips")
        return index % len(self), epoch

    def __getitem__(self, key) -> tuple[Tensor, int]:
        index, epoch = self._split_key(key)
        return self.get_clip(index, epoch)

    def get_clip(self, index: int, epoch: int) -> tuple[Tensor, int]:
        raise NotImplementedError
