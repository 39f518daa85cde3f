"""A resumable, sharded stream of real batches.

Batch k of the run is a pure function of (seed, rank, world size, k): epochs are shuffled by
``DistributedSampler`` (each rank reads its own shard) and the dataset returns ``dataset[(index, epoch)]``,
whose augmentation depends only on (seed, epoch, index). A resumed run starts the stream at the batch it
had reached, so it sees exactly the data the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

__all__ = ["ResumableBatchSampler", "make_batch_stream"]


class ResumableBatchSampler(Sampler):
    """Endless batches of ``(index, epoch)`` keys, starting at global batch ``start``."""

    def __init__(self, dataset, batch: int, seed: int, rank: int, world_size: int, start: int = 0):
        if len(dataset) < batch * world_size:
            from ..errors import DataError

            raise DataError(
                f"the dataset has {len(dataset)} clips, fewer than one global batch ({batch} × {world_size})"
            )
        self.sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.batch = batch
        self.per_epoch = len(self.sampler) // batch
        self.start = start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, skip = divmod(self.start, self.per_epoch)
        while True:
            self.sampler.set_epoch(epoch)
            indices = list(self.sampler)
            for b in range(skip, self.per_epoch):
                yield [(i, epoch) for i in indices[b * self.batch : (b + 1) * self.batch]]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs this for its own bookkeeping
        return 2**62


def make_batch_stream(
    dataset, batch: int, seed: int, rank: int, world_size: int, start: int, num_workers: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless ``(clips uint8 (B, C, T, H, W), labels (B,))`` from global batch ``start`` on."""
    sampler = ResumableBatchSampler(dataset, batch, seed, rank, world_size, start)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )
    for clips, labels in loader:
        yield clips, torch.as_tensor(labels)
