"""Main-process CPU time per real batch on the way to the device: before and after "uint8 to the device".

Before (the old ``training/loop.py``): the main process converted every uint8 batch to float32 on the
host (``to_float``), then the trainer copied the float batch (4 bytes a pixel, pageable) to the device.
After: the loop hands the loader's uint8 batch over as it is; on CUDA the loader pins it and the trainer
copies it with ``non_blocking`` and converts it on the device (``training.step.real_batch_to_device``).

Both read the same training DataLoader (``make_loader``: synthetic clips, workers in other processes, so
their decoding is not counted). ``time.process_time`` of the main process is taken around each batch,
alternating the two paths batch by batch. Without a GPU the host-to-device copy itself cannot be timed,
so a host memcpy of the bytes that cross stands in for it (the pageable float copy before; the pinning
copy of the uint8 batch after, which the DataLoader's pin thread does in the main process).

    python benchmarks/host_batch_cost.py                    # 192 px, batch 32, 16 frames: < 1 min
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tganv2.data import SyntheticVideoDataset, make_loader, to_float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8, help="timed batches of each path")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    dataset = SyntheticVideoDataset(
        n_clips=4 * args.batch, n_frames=args.frames, size=args.size, seed=0, train=True
    )
    loader = make_loader(dataset, args.batch, num_workers=args.workers, start_batch=0, pin_memory=False)
    batches = iter(loader)
    first, _ = next(batches)  # warm-up: worker start-up
    staging = {torch.uint8: torch.empty_like(first), torch.float32: torch.empty(first.shape)}

    def before() -> None:
        clips, _ = next(batches)
        clips = to_float(clips)  # (B, C, T, S, S) float32 on the host
        staging[torch.float32].copy_(clips)  # stands in for the pageable host-to-device copy

    def after() -> None:
        clips, _ = next(batches)  # (B, C, T, S, S) uint8, handed over as it is
        staging[torch.uint8].copy_(clips)  # stands in for pinning (the pin thread's copy)

    cpu: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(args.batches):
        for name, path in (("before", before), ("after", after)):
            start = time.process_time()
            path()
            cpu[name].append(time.process_time() - start)
    mb = {
        k: first.numel() * v.element_size() / 1e6
        for k, v in (("uint8", first), ("float32", staging[torch.float32]))
    }
    print(
        f"{args.size} px, batch {args.batch}, {args.frames} frames, {args.workers} workers: "
        f"{mb['uint8']:.0f} MB uint8 / {mb['float32']:.0f} MB float32 per batch"
    )
    for name in ("before", "after"):
        values = cpu[name]
        print(
            f"  {name:6s} main-process CPU per batch: median {1000 * statistics.median(values):.1f} ms "
            f"(min {1000 * min(values):.1f}, max {1000 * max(values):.1f}, {len(values)} batches)"
        )


if __name__ == "__main__":
    main()
