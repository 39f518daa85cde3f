"""Opening a dataset by path, and the DataLoader used for training (reference.md §4.1: each rank reads its
own shard, like ``chainermn.scatter_dataset(shuffle=True)``).

``open_dataset(path, ...)`` picks the dataset from the path:
  * ``None`` or ``"synthetic"`` → ``SyntheticVideoDataset``;
  * ``X.h5`` (or ``X.json`` next to ``X.h5``) → ``HDF5VideoDataset``;
  * a directory containing ``train.h5`` (``test.h5`` for ``train=False`` when present) → ``HDF5VideoDataset``;
  * any other directory → ``FolderVideoDataset`` (video files or frame folders, decoded on the fly).

``make_loader`` shuffles with a ``DistributedSampler`` (each rank its own shard, seeded) and asks the
dataset for ``(index, epoch)`` keys, so augmentation is a function of (seed, epoch, index) even with
persistent workers; ``infinite_batches`` walks the epochs and calls ``sampler.set_epoch``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from ..errors import DataError
from .base import VideoDataset
from .folder import FolderVideoDataset
from .hdf5 import HDF5VideoDataset
from .synthetic import SyntheticVideoDataset

__all__ = [
    "open_dataset",
    "build_dataset",
    "make_loader",
    "infinite_batches",
    "EpochKeySampler",
    "ResumableBatchSampler",
]


def open_dataset(
    path: str | Path | None,  # None/"synthetic", an .h5/.json file, or a directory
    n_frames: int = 16,  # frames per clip
    size: int = 64,  # square clip size (HDF5: crop size; folder and synthetic: output size)
    train: bool = True,  # training augmentation (random start, crop, flip) vs deterministic test clips
    seed: int = 0,  # seed of every random choice (with epoch and index)
    xmargin: int = 4,  # HDF5 only: training x-crop margin
    xflip: bool = True,  # HDF5 and folder: random horizontal flip in training
    n_clips: int = 4096,  # synthetic only: number of clips
) -> VideoDataset:
    """The dataset for ``path`` (see the module docstring); raises ``DataError`` for unusable paths."""
    if path is None or str(path) == "synthetic":
        return SyntheticVideoDataset(n_clips=n_clips, n_frames=n_frames, size=size, seed=seed, train=train)
    path = Path(path)
    hdf5_options = dict(n_frames=n_frames, size=size, train=train, xmargin=xmargin, xflip=xflip, seed=seed)
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        return HDF5VideoDataset(path, **hdf5_options)
    if path.is_file() and path.suffix == ".json":
        return HDF5VideoDataset(path.with_suffix(".h5"), json_path=path, **hdf5_options)
    if path.is_dir():
        split = path / ("train.h5" if train or not (path / "test.h5").is_file() else "test.h5")
        if split.is_file():
            return HDF5VideoDataset(split, **hdf5_options)
        return FolderVideoDataset(path, n_frames=n_frames, size=size, train=train, xflip=xflip, seed=seed)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (expected an .h5 file, a folder or 'synthetic')")
    raise DataError(f"{path}: unsupported dataset file (expected an .h5 file, a folder or 'synthetic')")


def build_dataset(cfg, train: bool = True) -> VideoDataset:
    """``open_dataset`` with a Config: ``data.path``, the model's frames and resolution, the train seed."""
    return open_dataset(
        cfg.data.path,
        n_frames=cfg.model.n_frames,
        size=cfg.model.resolution,
        train=train,
        seed=cfg.train.seed,
        xmargin=cfg.data.xmargin,
        xflip=cfg.data.xflip,
        n_clips=cfg.data.synthetic_size,
    )


class EpochKeySampler(Sampler):
    """Wraps a sampler of indices and yields ``(index, epoch)`` keys for ``VideoDataset.__getitem__``."""

    def __init__(self, sampler: DistributedSampler):
        self.sampler = sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((index, epoch) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


class ResumableBatchSampler(Sampler):
    """Endless batches of ``(index, epoch)`` keys from a ``DistributedSampler``, from global batch ``start``.

    Batch k is a pure function of (seed, rank, world size, k), so a resumed training run that starts the
    stream at the batch it had reached sees exactly the data of the uninterrupted run.
    """

    def __init__(self, sampler: DistributedSampler, batch: int, start: int = 0):
        self.sampler, self.batch, self.start = sampler, batch, start
        self.per_epoch = len(sampler) // batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = divmod(self.start, self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)
            for b in range(skip, self.per_epoch):
                yield [(i, epoch) for i in indices[b * self.batch : (b + 1) * self.batch]]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs a number for its bookkeeping
        return 2**62


def make_loader(
    dataset: VideoDataset,
    batch: int,  # clips per batch on this rank
    num_workers: int = 2,  # DataLoader worker processes (0 = load in the main process)
    seed: int = 0,  # shuffling seed (the same on every rank: the shards are disjoint)
    rank: int = 0,  # this process's rank
    world_size: int = 1,  # number of ranks; each reads len(dataset) / world_size clips per epoch
    drop_last: bool = True,  # drop the last incomplete batch (and the shard remainder)
    start_batch: int | None = None,  # endless and resumable from this global batch (training); None = epochs
) -> DataLoader:
    """A shuffling, sharded DataLoader yielding ``(clips uint8 (B, C, T, H, W), labels int64 (B,))``.

    With ``start_batch`` it never ends and begins at that batch of the run (``ResumableBatchSampler``);
    otherwise it is one epoch per iteration (use ``infinite_batches``).
    """
    per_rank = len(dataset) // world_size if drop_last else -(-len(dataset) // world_size)
    if drop_last and per_rank < batch:
        raise DataError(
            f"the dataset has {len(dataset)} clips: too few for a batch of {batch} "
            f"on each of {world_size} ranks"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=drop_last
    )
    options = dict(
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    if start_batch is not None:
        return DataLoader(
            dataset, batch_sampler=ResumableBatchSampler(sampler, batch, start_batch), **options
        )
    return DataLoader(
        dataset, batch_size=batch, sampler=EpochKeySampler(sampler), drop_last=drop_last, **options
    )


def infinite_batches(loader: DataLoader, start_epoch: int = 0) -> Iterator:
    """Batches from ``loader`` forever, epoch after epoch, calling ``sampler.set_epoch`` before each."""
    epoch = start_epoch
    while True:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        yield from loader
        epoch += 1
