"""Memory capacity (paper §5.5, Figures 5–6): classifier-IS against the number of training clips per class.

The paper trains TGANv2 on UCF101 with N videos per category and finds the IS high at small N, falling as N
grows, and flat past about 1,000 per category: the model's memory, not its expressiveness, limits it. This
script repeats the experiment on the built-in synthetic dataset (9 classes):

* ``data.clips_per_class=N`` for each ``--ns`` (default 1 4 16 64 256: 9 to 2,304 clips), on the base
  preset ``--base`` (default ``small-64`` as given, the official frame-only subsampling; ``--variant``
  picks a Table 1 model instead), ``key=value`` overrides on top;
* every N trains for the same ``--iterations`` (``train.iterations``: the preset's linear lr decay ends there)
  by ``tganv2 train``'s loop, one run directory per (N, seed) under ``--workdir``;
* scores: classifier-IS and classifier-FID (``tganv2.metrics.classifier``, the synthetic stand-in for C3D)
  of ``--n-samples`` generated videos; the FID's real statistics are ``--n-real`` clips of the full
  dataset, so at small N it also measures how much of the distribution the model never saw;
* ``--output`` is rewritten after every (N, seed): rerunning the command (with the same or more ``--ns`` and
  ``--seeds``) skips the finished runs and resumes an interrupted one from its last checkpoint;
* outputs: the JSON record, ``--markdown`` (the table) and ``--plot`` (IS and FID against N, log x axis,
  mean ± std over seeds)::

    .venv/bin/python benchmarks/memory_capacity.py --iterations 600 --seeds 0 --threads 2 \\
        --classifier runs/classifier.safetensors --workdir runs/memory-capacity \\
        --output docs/results/memory_capacity.json --markdown docs/results/memory_capacity.md \\
        --plot docs/results/memory_capacity.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tganv2.bench import experiment
from tganv2.config import VARIANTS, apply_overrides, load_preset, variant_config
from tganv2.data.synthetic import CLASS_NAMES
from tganv2.errors import UserError

NS = [1, 4, 16, 64, 256]


def capacity_jobs(args) -> list[experiment.Job]:
    jobs = []
    for seed in args.seeds:
        for n in args.ns:
            cfg = variant_config(load_preset(args.base, list(args.overrides)), args.variant)
            changes = {
                "data.clips_per_class": n,
                "train.iterations": args.iterations,
                "train.seed": seed,
                "train.sample_every": args.iterations,  # samples at the start and the end only
                "train.keep_checkpoints": 1,
            }
            cfg = apply_overrides(cfg, changes)
            fields = {"clips_per_class": n, "n_clips": n * len(CLASS_NAMES), "seed": seed}
            fields["batch"] = cfg.train.batch
            jobs.append(experiment.Job(f"n{n}-seed{seed}", cfg, fields))
    return jobs


def summarise(runs: list[dict], ns: list[int]) -> dict:
    table = {}
    for n in ns:
        mine = [r for r in runs if r["clips_per_class"] == n]
        if mine:
            table[str(n)] = {
                "clips_per_class": n,
                "n_clips": mine[0]["n_clips"],
                "seeds": [r["seed"] for r in mine],
                "cls_is": experiment.mean_std([r["cls_is"] for r in mine]),
                "cls_fid": experiment.mean_std([r["cls_fid"] for r in mine]),
            }
    return table


def markdown_table(table: dict) -> str:
    lines = ["| clips per class N | clips | seeds | cls-IS ↑ | cls-FID ↓ |", "|---|---|---|---|---|"]
    for row in table.values():
        (is_m, is_s), (fid_m, fid_s) = row["cls_is"], row["cls_fid"]
        lines.append(
            f"| {row['clips_per_class']} | {row['n_clips']} | {len(row['seeds'])} | "
            f"{is_m:.2f} ± {is_s:.2f} | {fid_m:.2f} ± {fid_s:.2f} |"
        )
    return "\n".join(lines) + "\n"


def plot(path: str | Path, table: dict, title: str) -> Path:
    from tganv2.bench.plot import Panel, Series, line_chart

    ns = [row["clips_per_class"] for row in table.values()]
    panels = []
    for key, name in (("cls_is", "classifier-IS (higher is better)"), ("cls_fid", "classifier-FID")):
        means = [row[key][0] for row in table.values()]
        stds = [row[key][1] for row in table.values()]
        series = Series("mean ± std over seeds", ns, means, yerr=stds)
        panels.append(
            Panel(name, "clips per class N (log scale)", name.split(" ")[0], [series], log10_y=False)
        )
    return line_chart(path, panels, title=title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--ns", type=int, nargs="+", default=NS, help="clips per class (data.clips_per_class)"
    )
    parser.add_argument("--iterations", type=int, default=600, help="iterations of every run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--variant", default=VARIANTS[0], choices=VARIANTS, help="the preset or a Table 1 model"
    )
    experiment.add_experiment_options(
        parser, "runs/memory-capacity", "write the chart (IS and FID against N) here"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the base preset")
    args = parser.parse_args(argv)
    if args.iterations < 1 or min(args.ns) < 1:
        parser.error("--iterations and every --ns must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        jobs = capacity_jobs(args)  # bad overrides: before any work
    except UserError as e:
        print(f"memory_capacity.py: error: {e}", file=sys.stderr)
        return 2

    classifier, scorer = experiment.make_scorer(args)
    keys = ("iterations", "base", "variant", "overrides", "n_samples", "n_real")
    settings = {**{k: getattr(args, k) for k in keys}, "classifier": classifier.weights_sha256}
    header = experiment.record_header("memory_capacity.py", argv, classifier)

    def record_of(runs: list[dict]) -> dict:
        return {
            **header,
            "args": vars(args),
            "settings": settings,
            "complete": len(runs) == len(jobs),
            "table": summarise(runs, args.ns),
            "runs": runs,
        }

    try:
        done = experiment.load_done(args.output, args.merge, settings)
    except UserError as e:
        print(f"memory_capacity.py: error: {e}", file=sys.stderr)
        return 2
    save = (
        (lambda runs: experiment.write_json(args.output, record_of(runs)))
        if args.output
        else (lambda runs: None)
    )
    runs = experiment.run_driver_jobs(jobs, scorer, args, done, save)
    record = record_of(runs)
    experiment.write_outputs(record, markdown_table(record["table"]), args.output, args.markdown)
    if args.plot:
        what = f"{args.base} ({args.variant}), {args.iterations} iterations"
        title = f"{what}, seeds {args.seeds}: {record['date']}"
        plot(args.plot, record["table"], title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
