"""Opening a dataset by path, and the DataLoader used for training (reference.md §4.1: each rank reads its
own shard, like ``chainermn.scatter_dataset(shuffle=True)``).

``open_dataset(path, ...)`` picks the dataset from the path:
  * ``None`` or ``"synthetic"`` → ``SyntheticVideoDataset``;
  * ``X.h5`` (or ``X.json`` next to ``X.h5``) → ``HDF5VideoDataset``;
  * a directory containing ``train.h5`` (``test.h5`` for ``train=False`` when present) → ``HDF5VideoDataset``;
  * any other directory, or a ``.zip`` of frame folders → ``FolderVideoDataset`` (decoded on the fly).

``make_loader`` shuffles with a ``DistributedSampler`` (each rank its own shard, seeded) and asks the
dataset for ``(index, epoch)`` keys, so augmentation is a function of (seed, epoch, index) even with
persistent workers; the batches never end and start at any global batch (``ResumableBatchSampler``).
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
from .zipped import is_zip_dataset

__all__ = ["open_dataset", "build_dataset", "make_loader", "ResumableBatchSampler"]


def open_dataset(
    path: str | Path | None,  # None/"synthetic", an .h5/.json file, or a directory
    n_frames: int = 16,  # frames per clip
    size: int = 64,  # square clip size (HDF5: crop size; folder and synthetic: output size)
    train: bool = True,  # training augmentation (random start, crop, flip) vs deterministic test clips
    seed: int = 0,  # seed of every random choice (with epoch and index)
    xmargin: int = 4,  # HDF5 only: training x-crop margin
    xflip: bool = True,  # HDF5 and folder: random horizontal flip in training
    n_clips: int = 4096,  # synthetic only: number of clips
    center_crop: bool = False,  # HDF5: training start and flip with a centre x-crop (folders always centre)
    clips_per_class: int = 0,  # keep this many clips (videos) of each class; 0 = all
) -> VideoDataset:
    """The dataset for ``path`` (see the module docstring); raises ``DataError`` for unusable paths."""
    if path is None or str(path) == "synthetic":
        return SyntheticVideoDataset(
            n_clips=n_clips,
            n_frames=n_frames,
            size=size,
            seed=seed,
            train=train,
            clips_per_class=clips_per_class,
        )
    path = Path(path)
    common = dict(n_frames=n_frames, size=size, train=train, xflip=xflip, seed=seed)
    common.update(clips_per_class=clips_per_class)
    hdf5_options = dict(common, xmargin=xmargin, center_crop=center_crop)
    if path.is_file() and path.suffix in (".h5", ".hdf5"):
        return HDF5VideoDataset(path, **hdf5_options)
    if path.is_file() and path.suffix == ".json":
        return HDF5VideoDataset(path.with_suffix(".h5"), json_path=path, **hdf5_options)
    if path.is_dir():
        split = path / ("train.h5" if train or not (path / "test.h5").is_file() else "test.h5")
        if split.is_file():
            return HDF5VideoDataset(split, **hdf5_options)
        return FolderVideoDataset(path, **common)
    if is_zip_dataset(path):
        return FolderVideoDataset(path, **common)
    expected = "an .h5 file, a folder or .zip of videos, or 'synthetic'"
    if not path.exists():
        raise DataError(f"{path}: no such file or directory (expected {expected})")
    raise DataError(f"{path}: unsupported dataset file (expected {expected})")


def build_dataset(cfg, train: bool = True, path: str | Path | None = None) -> VideoDataset:
    """``open_dataset`` with a Config: ``path`` (default ``data.path``), the model's frames and resolution,
    the train seed and the ``data`` options."""
    return open_dataset(
        path if path is not None else cfg.data.path,
        n_frames=cfg.model.n_frames,
        size=cfg.model.resolution,
        train=train,
        seed=cfg.train.seed,
        xmargin=cfg.data.xmargin,
        xflip=cfg.data.xflip,
        n_clips=cfg.data.synthetic_size,
        clips_per_class=cfg.data.clips_per_class,
    )


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
    start_batch: int = 0,  # the first global batch of the stream (a resumed run's position)
    pin_memory: bool | None = None,  # page-locked batches for non_blocking copies; None = CUDA available
) -> DataLoader:
    """A shuffling, sharded, endless DataLoader of ``(clips uint8 (B, C, T, H, W), labels int64 (B,))``,
    starting at batch ``start_batch`` of the run (``ResumableBatchSampler``).

    Batches stay uint8 (a quarter of float32's bytes): workers collate them into shared memory, the main
    process only pins them, and the consumer converts them on its device (``to_float``).
    """
    if len(dataset) // world_size < batch:
        raise DataError(
            f"the dataset has {len(dataset)} clips: too few for a batch of {batch} "
            f"on each of {world_size} ranks (lower train.batch, or raise data.clips_per_class)"
        )
    sampler = DistributedSampler(
        dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
    )
    options = dict(
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    return DataLoader(dataset, batch_sampler=ResumableBatchSampler(sampler, batch, start_batch), **options)
