"""Rendering cost of the built-in synthetic dataset: milliseconds per clip, in this process, by size.

The synthetic clips are drawn on the fly by the training DataLoader; this measures one clip at a time,
without workers (``benchmarks/data_throughput.py`` measures the loader). It replaces a wall-clock
assertion that used to sit in the tests: the speed of a machine is measured here, not asserted there.

    python benchmarks/synthetic_generation.py                  # 16 frames at 32, 64 and 128 px
    python benchmarks/synthetic_generation.py --sizes 64 192 --frames 16 --clips 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tganv2.data import SyntheticVideoDataset


def ms_per_clip(size: int, n_frames: int, n_clips: int, repeats: int) -> list[float]:
    """Per-repeat mean milliseconds per clip (after one untimed warm-up clip)."""
    dataset = SyntheticVideoDataset(n_clips=n_clips, n_frames=n_frames, size=size, seed=0)
    dataset[0]
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(n_clips):
            dataset[i]
        runs.append((time.perf_counter() - start) / n_clips * 1000)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128], help="clip sizes (px)")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--clips", type=int, default=64, help="clips per timed repeat")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'size':>6} {'frames':>6} {'ms/clip (median)':>17} {'min':>7} {'max':>7}")
    for size in args.sizes:
        runs = ms_per_clip(size, args.frames, args.clips, args.repeats)
        print(
            f"{size:>6} {args.frames:>6} {statistics.median(runs):>17.2f} {min(runs):>7.2f} {max(runs):>7.2f}"
        )


if __name__ == "__main__":
    main()
