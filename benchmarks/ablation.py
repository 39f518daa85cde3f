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

``--mode paper`` runs the comparison as the paper did (issue 14 §3): equal memory and equal iterations.

* batches: paper Table 1's N_1..N_4 (bs 64: frame+batch 64/32/16/8, frame-only 8/8/8/8, batch-only
  8/4/4/4, no-subsampling 4/4/4/4, the four GPUs together) times ``--batch / 64``; ``--batch`` is
  frame+batch's level-1 batch and must be a multiple of 16, so that every entry stays a whole number and the
  ratios are exactly Table 1's (16 → 16/8/4/2, 2/2/2/2, 2/1/1/1, 1/1/1/1; 32 → 32/16/8/4, 4/4/4/4, ...).
  The batch strides are the ratios of consecutive N_l; a base preset with fewer levels takes the first ones
  (demo-64: N_1..N_3);
* every variant trains for ``--iterations`` (``train.iterations``: the preset's linear lr decay ends there)
  by ``tganv2 train``'s loop, one run directory per (variant, seed) under ``--workdir``;
* ``--output`` is rewritten after every (variant, seed): rerunning the command (with the same or more
  ``--variants`` and ``--seeds``) skips the finished runs and resumes an interrupted one from its last
  checkpoint; ``key=value`` overrides change the base
  preset (e.g. a tiny model in the tests);
* parallel lanes: the same command with disjoint ``--variants``/``--seeds``, each with its own
  ``--output``, one process per core; then the full command with ``--merge LANE.json ...`` (nothing left to
  train) writes the one record, table and chart;
* outputs: the JSON record, ``--markdown`` (the table) and ``--plot`` (IS and FID, mean ± std)::

    .venv/bin/python benchmarks/ablation.py --mode paper --iterations 600 --seeds 0 1 2 --threads 2 \
        --classifier runs/classifier.safetensors --workdir runs/paper-table2 \
        --output docs/results/paper_table2.json --markdown docs/results/paper_table2.md \
        --plot docs/results/paper_table2.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from tganv2.bench.experiment import (
    Job,
    add_experiment_options,
    load_done,
    make_scorer,
    mean_std,
    record_header,
    run_driver_jobs,
    write_json,
    write_outputs,
)
from tganv2.config import ABLATIONS, ablation_overrides, apply_overrides, load_preset, variant_config
from tganv2.data.base import to_float
from tganv2.data.loader import make_loader
from tganv2.data.synthetic import SyntheticVideoDataset
from tganv2.errors import UserError
from tganv2.nn.subsample import kept_batch
from tganv2.training.step import Trainer

VARIANTS = list(ABLATIONS)
TABLE1 = {  # paper Table 1: N_1..N_4, the batch at each level of the bs-64 runs (four GPUs together)
    "frame+batch": (64, 32, 16, 8),
    "frame-only": (8, 8, 8, 8),
    "batch-only": (8, 4, 4, 4),
    "no-subsampling": (4, 4, 4, 4),
}
TABLE1_BS = TABLE1["frame+batch"][0]  # 64: the "bs" that --batch scales
TABLE1_STEP = TABLE1_BS // min(row[0] for row in TABLE1.values())  # 16: --batch must be a multiple of it
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
    """``--mode budget``: the variant at level-1 ``batch``, batch strides capped at one sample."""
    cfg = variant_config(load_preset(base, {"train.batch": 64}), variant)  # any batch the strides divide
    strides = capped_batch_strides(list(cfg.model.batch_strides), batch)
    overrides = {"model.batch_strides": strides, "train.batch": batch, "train.iterations": 10**6}
    return apply_overrides(cfg, overrides)


def table1_level_batches(variant: str, batch: int, n_levels: int) -> list[int]:
    """Table 1's N_1..N_L of ``variant`` times ``batch / 64`` (``batch``: frame+batch's level-1 batch)."""
    if batch < TABLE1_STEP or batch % TABLE1_STEP:
        raise UserError(
            f"--batch {batch}: --mode paper needs a multiple of {TABLE1_STEP}, so that every batch of "
            f"Table 1 scaled by batch/{TABLE1_BS} is a whole number (e.g. 16: 16/8/4/2 ... 1/1/1/1)"
        )
    if n_levels > len(TABLE1[variant]):
        raise UserError(
            f"--mode paper: Table 1 has {len(TABLE1[variant])} levels, the base preset {n_levels}"
        )
    return [n * batch // TABLE1_BS for n in TABLE1[variant][:n_levels]]


def paper_config(base: str, variant: str, batch: int, iterations: int, seed: int, overrides=()):
    """``--mode paper``: the variant with Table 1's scaled batches, for ``iterations`` from ``seed``."""
    cfg = load_preset(base, list(overrides))
    levels = table1_level_batches(variant, batch, cfg.model.n_levels)
    changes = {
        **ablation_overrides(variant, len(cfg.model.frame_strides)),  # the frame strides
        "model.batch_strides": [a // b for a, b in zip(levels, levels[1:])],
        "train.batch": levels[0],
        "train.iterations": iterations,
        "train.seed": seed,
        "train.sample_every": iterations,  # samples at the start and the end only
        "train.keep_checkpoints": 1,
    }
    cfg = apply_overrides(cfg, changes)  # validated once, with every change made
    assert [level.batch for level in cfg.model.level_plan(levels[0])] == levels, (variant, levels)
    return cfg


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


def budget_runs(args, scorer) -> list[dict]:
    runs = []
    dataset = SyntheticVideoDataset(load_preset(args.base).data.synthetic_size, 16, 64, seed=0, train=True)
    for seed in args.seeds:
        for variant in args.variants:
            divisor = TABLE1_BS // TABLE1[variant][0]  # 1, 8, 8, 16
            batch = args.batch if args.equal_batch else max(1, args.batch // divisor)
            cfg = ablation_config(args.base, variant, batch)
            generator, iterations, seconds, cpu_seconds = train_for_budget(
                cfg, seed, args.budget_seconds, dataset, args.budget_clock
            )
            scores = scorer.score(generator, seed=10_000 + seed)
            run = {
                "variant": variant,
                "seed": seed,
                "batch": batch,
                "level_batches": [level.batch for level in cfg.model.level_plan(batch)],
                "iterations": iterations,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "batch_strides": list(cfg.model.batch_strides),
                "frame_strides": list(cfg.model.frame_strides),
                **scores,
            }
            runs.append(run)
            print(json.dumps(run), file=sys.stderr, flush=True)
    return runs


def paper_jobs(args) -> list[Job]:
    jobs = []
    for seed in args.seeds:  # seed-major: the ETA after a full seed already averages every variant
        for variant in args.variants:
            cfg = paper_config(args.base, variant, args.batch, args.iterations, seed, args.overrides)
            levels = cfg.model.level_plan(cfg.train.batch)
            fields = {
                "variant": variant,
                "seed": seed,
                "batch": cfg.train.batch,
                "level_batches": [level.batch for level in levels],
                # Σ_l N_l·T_l·S_l²: the generated (and real) video values of a step, a proxy of its memory
                "level_voxels": sum(level.batch * level.frames * level.size**2 for level in levels),
                "batch_strides": list(cfg.model.batch_strides),
                "frame_strides": list(cfg.model.frame_strides),
            }
            jobs.append(Job(f"{variant}-seed{seed}", cfg, fields))
    return jobs


def summarise(runs: list[dict], variants: list[str]) -> dict:
    table = {}
    for variant in variants:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        table[variant] = {
            "batch": mine[0]["batch"],
            "level_batches": mine[0]["level_batches"],
            "iterations_median": statistics.median(r["iterations"] for r in mine),
            "seeds": [r["seed"] for r in mine],
            "cls_is": mean_std([r["cls_is"] for r in mine]),
            "cls_fid": mean_std([r["cls_fid"] for r in mine]),
            "paper_is_fid": PAPER_TABLE2[variant],
        }
    return table


def markdown_table(table: dict) -> str:
    lines = [
        "| variant | N_l (Table 1 scaled) | iterations (median) | seeds | cls-IS ↑ | cls-FID ↓ "
        "| paper IS / FID |",
        "|---|---|---|---|---|---|---|",
    ]
    for variant, row in table.items():
        (is_m, is_s), (fid_m, fid_s) = row["cls_is"], row["cls_fid"]
        paper_is, paper_fid = row["paper_is_fid"]
        lines.append(
            f"| {variant} | {'/'.join(map(str, row['level_batches']))} | {row['iterations_median']:g} | "
            f"{len(row['seeds'])} | {is_m:.2f} ± {is_s:.2f} | {fid_m:.2f} ± {fid_s:.2f} | "
            f"{paper_is} / {paper_fid} |"
        )
    return "\n".join(lines) + "\n"


def settings_of(args) -> dict:
    """What a resumed ``--mode paper`` record must share with the command: what changes a run's result
    (not the output paths, nor ``--variants`` and ``--seeds``: more of them add runs to the record)."""
    keys = ("mode", "iterations", "batch", "base", "overrides", "n_samples", "n_real")
    return {**{k: getattr(args, k) for k in keys}, "classifier": args.classifier_sha256}


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=["budget", "paper"],
        default="budget",
        help="budget: equal seconds per variant; paper: Table 1's equal-memory batches, equal iterations",
    )
    parser.add_argument("--budget-seconds", type=float, default=120.0, help="wall clock per variant and seed")
    parser.add_argument(
        "--budget-clock",
        choices=["wall", "cpu"],
        default="wall",
        help="wall clock, or this process's CPU time (fair on a machine shared with others)",
    )
    parser.add_argument("--iterations", type=int, default=600, help="--mode paper: iterations of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch", type=int, default=16, help="frame+batch's level-1 batch (Table 1: 16)")
    parser.add_argument(
        "--equal-batch", action="store_true", help="--mode budget: every variant uses --batch"
    )
    parser.add_argument("--variants", nargs="+", default=VARIANTS, choices=VARIANTS)
    add_experiment_options(parser, "runs/paper-table2", "write the bar chart (IS and FID, mean ± std) here")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="--mode paper: overrides of the base preset"
    )
    args = parser.parse_args(argv)
    if args.mode == "budget" and args.overrides:
        parser.error("key=value overrides need --mode paper")
    if args.mode == "budget" and (args.merge or args.report_only):
        parser.error("--merge and --report-only need --mode paper")
    if args.iterations < 1:
        parser.error(f"--iterations must be >= 1, got {args.iterations}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        jobs = paper_jobs(args) if args.mode == "paper" else []  # bad batches or overrides: before any work
    except UserError as e:
        print(f"ablation.py: error: {e}", file=sys.stderr)
        return 2

    classifier, scorer = make_scorer(args)
    args.classifier_sha256 = classifier.weights_sha256
    header = record_header("ablation.py", argv, classifier)

    def record_of(runs: list[dict]) -> dict:
        return {
            **header,
            "args": {k: v for k, v in vars(args).items() if k != "classifier_sha256"},
            "settings": settings_of(args),
            "complete": len(runs) == len(jobs) if args.mode == "paper" else True,
            "table": summarise(runs, args.variants),
            "runs": runs,
        }

    if args.mode == "paper":
        try:
            done = load_done(args.output, args.merge, settings_of(args))
        except UserError as e:
            print(f"ablation.py: error: {e}", file=sys.stderr)
            return 2
        save = (lambda runs: write_json(args.output, record_of(runs))) if args.output else (lambda runs: None)
        runs = run_driver_jobs(jobs, scorer, args, done, save)
    else:
        runs = budget_runs(args, scorer)
    record = record_of(runs)
    write_outputs(record, markdown_table(record["table"]), args.output, args.markdown)
    if args.plot:
        from tganv2.bench.plot import mean_std_chart

        metrics = [("cls_is", "classifier-IS (higher is better)", "IS"), ("cls_fid", "classifier-FID", "FID")]
        what = f"{args.iterations} iterations" if args.mode == "paper" else f"{args.budget_seconds:g} s"
        title = f"{args.base}, {what}, seeds {args.seeds}: {record['date']}"
        mean_std_chart(args.plot, record["table"], metrics, title=title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
