"""CPU training steps on a busy machine: OpenMP's wait policies, from spinning to sleeping.

With torch's default thread count every core has a thread; when other jobs hold cores, libgomp's threads
spin at each barrier while they wait for a thread that is not running, and the step slows many times
over. Threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``) avoid that, but on an idle machine every
parallel region then pays for waking them. A short spin (``GOMP_SPINCOUNT``, which overrides the policy's
spin count) keeps most of the idle speed and sleeps soon enough on a busy machine; the ``tganv2`` command
sets one before torch loads (tganv2/cli.py). This runs real ``Trainer.step`` calls of a preset in fresh
child processes, alternating the policies, with ``--busy N`` busy-loop processes started for the duration
(0: measure under whatever load the machine has).

    python benchmarks/busy_cpu.py                       # demo-64, 6 timed steps, 2 rounds, 1 busy loop
    python benchmarks/busy_cpu.py --busy 0 --rounds 3   # under the machine's own load
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = """
import json, os, sys, time
import torch
from tganv2.config import load_preset
from tganv2.data import SyntheticVideoDataset, to_float
from tganv2.training.step import Trainer

preset, steps, warmup, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if threads:
    torch.set_num_threads(threads)
cfg = load_preset(preset)
trainer = Trainer(cfg, "cpu", seed=0)
m = cfg.model
dataset = SyntheticVideoDataset(n_clips=cfg.train.batch, n_frames=m.n_frames, size=m.resolution)
batch = (to_float(torch.stack([dataset[i][0] for i in range(cfg.train.batch)])), None)
walls, cpus = [], []
for i in range(warmup + steps):
    c0, t0 = time.process_time(), time.perf_counter()
    trainer.step(lambda: batch)
    if i >= warmup:
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
load = os.getloadavg()[0]
print(json.dumps({"wall": walls, "cpu": cpus, "threads": torch.get_num_threads(), "load": load}))
"""

# name → the OpenMP variables of the child (libgomp's default: spin 300,000 times before sleeping)
POLICIES: dict[str, dict[str, str]] = {
    "default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 1k": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "1000"},
    "spin 10k": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "10000"},
    "ACTIVE": {"OMP_WAIT_POLICY": "ACTIVE"},
}


def run_child(policy: dict[str, str], args) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(policy)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, args.preset, str(args.steps), str(args.warmup), str(args.threads)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="demo-64", help="preset whose Trainer.step is timed")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per child")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, each policy once per round")
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes held during the runs")
    parser.add_argument(
        "--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES), help="policies to time"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the children (0: default)")
    args = parser.parse_args()
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    results: dict[str, list[dict]] = {name: [] for name in args.policies}
    try:
        time.sleep(1 if busy else 0)
        for _ in range(args.rounds):
            for name in args.policies:
                results[name].append(run_child(POLICIES[name], args))
    finally:
        for p in busy:
            p.kill()
            p.wait()
    print(
        f"{args.preset}, {args.busy} busy loop(s), {os.cpu_count()} CPUs, "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"{'policy':>9} {'threads':>7} {'s/step (median)':>16} {'CPU-s/step':>11} "
        f"{'per round':>24} {'load':>9}"
    )
    for name, runs in results.items():
        wall = statistics.median(w for r in runs for w in r["wall"])
        cpu = statistics.median(c for r in runs for c in r["cpu"])
        rounds = " ".join(f"{statistics.median(r['wall']):.2f}" for r in runs)
        loads = " ".join(f"{r['load']:.1f}" for r in runs)
        print(f"{name:>9} {runs[0]['threads']:>7} {wall:>16.2f} {cpu:>11.2f} {rounds:>24} {loads:>9}")


if __name__ == "__main__":
    main()
