"""One D pass over reals and fakes together vs two passes (``train.d_joint_pass``), on the CPU.

Two Trainers of the same preset and seed, one with each setting, step in turn (A B A B ...) on the same
real batches, so the ratio joint / separate is taken pair by pair and machine drift cancels. Reported:
median step CPU seconds (``time.process_time``, single thread) and wall seconds of each, and the median
and range of the paired CPU-time ratio.

    python benchmarks/d_joint_pass.py                       # small-64, batch 8, fp32, 1 thread: ~1 min
    python benchmarks/d_joint_pass.py --preset small-64 --batch 16 --steps 6
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from tganv2.config import load_preset
from tganv2.data.synthetic import SyntheticVideoDataset
from tganv2.training.step import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small-64")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8, help="timed steps of each setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    trainers = {}
    for joint in (False, True):
        cfg = load_preset(args.preset, [f"train.batch={args.batch}", f"train.d_joint_pass={joint}"])
        torch.manual_seed(0)
        trainers[joint] = Trainer(cfg, seed=0)
    m = cfg.model
    dataset = SyntheticVideoDataset(n_clips=2 * args.batch, n_frames=m.n_frames, size=m.resolution, seed=0)
    clips = torch.stack([dataset.get_clip(i, 0)[0] for i in range(len(dataset))])  # (2B, C, T, S, S) uint8
    batches = [clips[: args.batch], clips[args.batch :]]

    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    for i in range(args.warmup + args.steps):
        for joint in (False, True):
            batch = batches[i % 2]
            start, cpu_start = time.perf_counter(), time.process_time()
            trainers[joint].step(lambda batch=batch: (batch, None))
            if i >= args.warmup:
                wall[joint].append(time.perf_counter() - start)
                cpu[joint].append(time.process_time() - cpu_start)
    ratios = [j / s for j, s in zip(cpu[True], cpu[False])]
    print(f"{args.preset}, batch {args.batch}, fp32, {args.threads} thread(s), {args.steps} paired steps")
    for joint, name in ((False, "two passes (default)"), (True, "one joint pass")):
        print(
            f"  {name:22s} CPU {statistics.median(cpu[joint]):.3f} s/step, "
            f"wall {statistics.median(wall[joint]):.3f} s/step"
        )
    print(
        f"  joint / two passes (CPU, paired): median {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f})"
    )


if __name__ == "__main__":
    main()
