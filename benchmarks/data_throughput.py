"""Data-loading throughput: clips/s from HDF5 (official layout), raw video files and the synthetic dataset.

Makes its own data in a temporary folder: ``--videos`` XviD ``.avi`` files (UCF101's codec) of ``--frames``
frames at ``--height`` x ``--width``, converted with ``tganv2 data prepare folder`` to ``--h5-size`` for the
HDF5 loader (which crops ``--crop``), and read directly by the folder loader (decode, seek, centre-square
crop, resize to ``--crop``). Each loader is timed through ``make_loader`` (the training DataLoader) at 1, 2
and N = CPU-count workers, after one warm-up batch (worker start-up is not counted).

    python benchmarks/data_throughput.py                 # defaults: < 2 min on a 2-core CPU
    python benchmarks/data_throughput.py --height 240 --width 320 --h5-size 192x256 --crop 192
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from tganv2.data import (
    FolderVideoDataset,
    HDF5VideoDataset,
    SyntheticVideoDataset,
    make_loader,
    write_video,
)
from tganv2.data.prepare import parse_size, prepare_folder


def make_videos(folder: Path, n_videos: int, n_frames: int, height: int, width: int) -> None:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(n_videos):
        t = np.arange(n_frames, dtype=np.float32)[:, None, None]
        red = 128 + 100 * np.sin(xs / (9 + i) + t / 4)
        green = 128 + 100 * np.cos(ys / (7 + i) - t / 5)
        frames = np.stack([red, green, 255 - red], axis=-1).clip(0, 255).astype(np.uint8)  # (T, H, W, 3)
        write_video(folder / f"class{i % 4}" / f"v_Class{i % 4}_g{i:02d}_c01.avi", frames, fps=25)


def clips_per_second(dataset, batch: int, workers: int, n_batches: int) -> float:
    loader = make_loader(dataset, batch=batch, num_workers=workers, seed=0)
    batches = iter(loader)  # endless
    next(batches)  # warm-up: worker start-up, file opening
    start = time.perf_counter()
    for _ in range(n_batches):
        clips, _ = next(batches)
    elapsed = time.perf_counter() - start
    del batches, loader
    return n_batches * batch / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=24, help="number of generated videos")
    parser.add_argument("--frames", type=int, default=64, help="frames per generated video")
    parser.add_argument("--height", type=int, default=120, help="height of the generated videos")
    parser.add_argument("--width", type=int, default=160, help="width of the generated videos")
    parser.add_argument("--h5-size", default="96x128", help="ROWSxCOLS stored in the HDF5 file")
    parser.add_argument("--crop", type=int, default=64, help="clip size (HDF5 crop, folder/synthetic resize)")
    parser.add_argument("--n-frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--batch", type=int, default=8, help="clips per batch")
    parser.add_argument("--batches", type=int, default=25, help="timed batches per measurement")
    parser.add_argument("--workers", default=None, help="comma-separated worker counts (default 1,2,N)")
    args = parser.parse_args(argv)

    n_cpus = os.cpu_count() or 1
    worker_counts = [int(w) for w in args.workers.split(",")] if args.workers else sorted({1, 2, n_cpus})
    rows, cols = parse_size(args.h5_size)
    print(f"python {' '.join(sys.argv)}")
    print(
        f"{n_cpus} CPUs; {args.videos} XviD videos of {args.frames} frames at {args.height}x{args.width}; "
        f"HDF5 at {rows}x{cols}; clips {args.n_frames}x{args.crop}x{args.crop}; batch {args.batch}"
    )
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary)
        make_videos(root / "videos", args.videos, args.frames, args.height, args.width)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            prepare_folder(root / "videos", root / "h5", rows, cols, workers=min(4, n_cpus))
        datasets = {
            "hdf5": HDF5VideoDataset(
                root / "h5" / "train.h5", n_frames=args.n_frames, size=args.crop, seed=0
            ),
            "video files": FolderVideoDataset(
                root / "videos", n_frames=args.n_frames, size=args.crop, seed=0
            ),
            "synthetic": SyntheticVideoDataset(n_clips=4096, n_frames=args.n_frames, size=args.crop, seed=0),
        }
        print(f"| {'dataset':<12} | {'workers':>7} | {'clips/s':>8} |")
        print(f"|{'-' * 14}|{'-' * 9}|{'-' * 10}|")
        for name, dataset in datasets.items():
            for workers in worker_counts:
                rate = clips_per_second(dataset, args.batch, workers, args.batches)
                print(f"| {name:<12} | {workers:>7} | {rate:>8.1f} |", flush=True)


if __name__ == "__main__":
    main()
