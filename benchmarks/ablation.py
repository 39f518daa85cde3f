"""Mini Table 2: TGANv2 (``frame+batch``) and the three Table 1 ablations on synthetic data at 64 px.

Paper Table 2 (UCF101, 192 px, four GPUs) ranks TGANv2 > frame subsampling only > adaptive batch
reduction only > without subsampling, by C3D IS and FID. This script repeats the comparison at toy scale:

* base preset ``small-64`` (t_size 1: levels 8/16/32/64 px, 16 frames), trained on ``SyntheticVideoDataset``;
* the variants are ``tganv2.config.ABLATIONS`` on the base preset's own number of layers: ``frame+batch``
  (frame and batch strides 2, the paper's model, "TGANv2" in its tables), ``frame-only``, ``batch-only``
  and ``no-subsampling``;
* batches as in Table 1 (per device: frame+batch 16 → 16/8/4/2, frame-only 2, batch-only 2 → 2/1/1/1,
  no-subsampling 1), scaled by ``--batch``; or ``--equal-batch`` for the same level-1 batch everywhere.
  A batch stride stops at a batch of one ("when the batch size is only one, the subsampling layer does not
  perform the batch reduction"), so batch-only keeps its strides legal at batch 2;
* every variant trains for the same wall-clock budget (``--budget-seconds``, data loading included) with a
  constant learning rate (the linear decay is set to 10^6 iterations, so the budget does not matter);
  ``--budget-clock cpu`` counts this process's CPU time instead, which other processes on a shared
  machine do not eat into (use it with ``--threads 1``, since idle OpenMP threads spin);
* scores: classifier-IS and classifier-FID (``tganv2.metrics.classifier``, the synthetic-data stand-in for
  C3D) of ``--n-samples`` generated 16-frame 64 px videos, real statistics from ``--n-real`` training
  clips; mean ± population std over ``--seeds``.

    .venv/bin/python benchmarks/ablation.py --budget-seconds 120 --seeds 0 1 2 --output ablation.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tganv2.config import ABLATIONS, apply_overrides, load_preset, variant_config
from tganv2.data.base import to_float
from tganv2.data.loader import make_loader
from tganv2.data.synthetic import SyntheticVideoDataset
from tganv2.nn.subsample import kept_batch
from tganv2.training.step import Trainer

VARIANTS = list(ABLATIONS)
TABLE1_BATCH_DIVISOR = {"frame+batch": 1, "frame-only": 8, "batch-only": 8, "no-subsampling": 16}  # 16/2/2/1
PAPER_TABLE2 = {  # UCF101, TGANv2 (frame+batch) bs = 64: IS, FID
    "frame+batch": (22.70, 3591),
    "frame-only": (21.01, 3723),
    "batch-only": (14.30, 4525),
    "no-subsampling": (12.10, 5222),
}


def capped_batch_strides(strides: list[int], batch: int) -> list[int]:
    """Batch strides that stop reducing once a level has a single sample (or would not divide evenly)."""
    out, n = [], batch
    for stride in strides:
        stride = stride if n % stride == 0 else 1
        out.append(stride)
        n = kept_batch(n, stride)
    return out


def ablation_config(base: str, variant: str, batch: int):
    cfg = variant_config(load_preset(base, {"train.batch": 64}), variant)  # any batch the strides divide
    strides = capped_batch_strides(list(cfg.model.batch_strides), batch)
    overrides = {"model.batch_strides": strides, "train.batch": batch, "train.iterations": 10**6}
    return apply_overrides(cfg, overrides)


def train_for_budget(
    cfg, seed: int, budget_seconds: float, dataset, clock: str = "wall"
) -> tuple[torch.nn.Module, int, float, float]:
    """``Trainer.step`` until ``budget_seconds`` of wall clock (or of this process's CPU time) have passed.

    Returns (generator, iterations, wall seconds, CPU seconds).
    """
    torch.manual_seed(seed)
    trainer = Trainer(cfg, "cpu", seed=seed)
    stream = iter(make_loader(dataset, cfg.train.batch, num_workers=0, seed=seed, start_batch=0))

    def next_real():
        clips, labels = next(stream)  # uint8 (B, C, T, H, W)
        return to_float(clips), labels

    now = time.process_time if clock == "cpu" else time.perf_counter
    wall_start, cpu_start, iterations = time.perf_counter(), time.process_time(), 0
    start = now()
    while now() - start < budget_seconds:
        trainer.step(next_real)
        iterations += 1
    return trainer.generator, iterations, time.perf_counter() - wall_start, time.process_time() - cpu_start


def get_classifier(path: str | None, seed: int, steps: int):
    from tganv2.metrics.classifier import load_classifier, save_classifier, train_classifier

    if path and Path(path).is_file():
        return load_classifier(path)
    model = train_classifier(size=64, frames=16, steps=steps, seed=seed, progress=False)
    if path:
        save_classifier(path, model)
        model = load_classifier(path)  # records the weights' sha256
    return model


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))  # population std, as the official scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-seconds", type=float, default=120.0, help="wall clock per variant and seed")
    parser.add_argument(
        "--budget-clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock, or this process's CPU time (fair on a machine shared with others)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=16, help="frame+batch's level-1 batch (Table 1: 16)")
    parser.add_argument("--equal-batch", action="store_true", help="every variant uses --batch")
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    parser.add_argument("--base", default="small-64", help="base preset (64 px)")
    parser.add_argument("--n-samples", type=int, default=512, help="generated videos per score")
    parser.add_argument("--n-real", type=int, default=1024, help="training clips for the real statistics")
    parser.add_argument("--classifier", default=None, help="classifier .safetensors (trained if absent)")
    parser.add_argument("--classifier-steps", type=int, default=600, help="steps to train a new classifier")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--output", default=None, help="write the JSON record here")
    parser.add_argument("--plot", default=None, help="write the bar chart (IS and FID, mean ± std) here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from tganv2.metrics.scorer import ClassifierScorer

    classifier = get_classifier(args.classifier, seed=0, steps=args.classifier_steps)
    real = SyntheticVideoDataset(args.n_real, 16, 64, seed=0, train=True)
    scorer = ClassifierScorer(classifier, real=real, n_samples=args.n_samples, n_real=args.n_real)
    runs = []
    dataset = SyntheticVideoDataset(load_preset(args.base).data.synthetic_size, 16, 64, seed=0, train=True)
    for seed in args.seeds:
        for variant in args.variants:
            batch = args.batch if args.equal_batch else max(1, args.batch // TABLE1_BATCH_DIVISOR[variant])
            cfg = ablation_config(args.base, variant, batch)
            generator, iterations, seconds, cpu_seconds = train_for_budget(
                cfg, seed, args.budget_seconds, dataset, args.budget_clock
            )
            scores = scorer.score(generator, seed=10_000 + seed)
            run = {
                "variant": variant,
                "seed": seed,
                "batch": batch,
                "iterations": iterations,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "batch_strides": list(cfg.model.batch_strides),
                "frame_strides": list(cfg.model.frame_strides),
                **scores,
            }
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    table = {}
    for variant in args.variants:
        mine = [r for r in runs if r["variant"] == variant]
        table[variant] = {
            "batch": mine[0]["batch"],
            "iterations_median": statistics.median(r["iterations"] for r in mine),
            "cls_is": mean_std([r["cls_is"] for r in mine]),
            "cls_fid": mean_std([r["cls_fid"] for r in mine]),
            "paper_is_fid": PAPER_TABLE2[variant],
        }
    record = {
        "command": "python benchmarks/ablation.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "classifier": {"sha256": classifier.weights_sha256, "training": classifier.training_info},
        "args": vars(args),
        "table": table,
        "runs": runs,
    }
    print("| variant | batch (L1) | iterations (median) | cls-IS ↑ | cls-FID ↓ | paper IS / FID |")
    print("|---|---|---|---|---|---|")
    for variant, row in table.items():
        (is_m, is_s), (fid_m, fid_s) = row["cls_is"], row["cls_fid"]
        paper_is, paper_fid = row["paper_is_fid"]
        print(
            f"| {variant} | {row['batch']} | {row['iterations_median']:g} | {is_m:.2f} ± {is_s:.2f} | "
            f"{fid_m:.2f} ± {fid_s:.2f} | {paper_is} / {paper_fid} |"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    if args.plot:
        from tganv2.bench.plot import mean_std_chart

        metrics = [("cls_is", "classifier-IS (higher is better)", "IS"), ("cls_fid", "classifier-FID", "FID")]
        mean_std_chart(args.plot, table, metrics, title=f"{args.base}, seeds {args.seeds}: {record['date']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
