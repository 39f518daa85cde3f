"""Long experiments as a list of training runs (``benchmarks/ablation.py --mode paper``,
``benchmarks/memory_capacity.py``): resumable, scored, with progress and an ETA.

Each ``Job`` is one ``tganv2 train`` run (``tganv2.training.loop.train``) in its own run directory
``WORK/<job.name>``, then scored by a ``ClassifierScorer`` (classifier-IS and classifier-FID of the final
generator). The JSON record is rewritten, atomically, after every finished job, so a killed experiment is
resumed by rerunning its command: finished jobs are read back from the record, and an interrupted job
resumes from its last checkpoint (``train``'s own resume). A record written with other settings is refused.
One experiment can also run as parallel lanes, one process per core: the same command with disjoint
``--seeds``/``--variants`` and its own ``--output``; the full command with ``--merge LANE.json ...`` then
reads every lane's finished runs and writes the one record, table and chart.
"""

from __future__ import annotations

import datetime
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config
from ..data.synthetic import SyntheticVideoDataset
from ..errors import UserError
from ..metrics.classifier import load_classifier, save_classifier, train_classifier
from ..metrics.scorer import ClassifierScorer
from ..snapshot import load_generator
from ..training.checkpoint import checkpoint_iteration
from ..training.loop import RunOptions, TrainingInterrupted, train

__all__ = [
    "Job",
    "get_classifier",
    "add_experiment_options",
    "make_scorer",
    "record_header",
    "write_outputs",
    "mean_std",
    "write_json",
    "load_runs",
    "load_done",
    "run_jobs",
    "run_driver_jobs",
    "format_seconds",
]


@dataclass
class Job:
    name: str  # run directory under the work folder, and the run's key in the record
    cfg: Config  # the complete training config (train.iterations and train.seed included)
    fields: dict[str, Any] = field(default_factory=dict)  # what the record keeps about the job


def get_classifier(path: str | None, seed: int, steps: int):
    """The synthetic-data classifier at ``path``, or one trained now (and saved there when given)."""
    if path and Path(path).is_file():
        return load_classifier(path)
    model = train_classifier(size=64, frames=16, steps=steps, seed=seed, progress=False)
    if path:
        save_classifier(path, model)
        model = load_classifier(path)  # records the weights' sha256
    return model


def add_experiment_options(parser, workdir: str, plot_help: str) -> None:
    """The options every experiment driver shares: base preset, scoring, threads and where results go."""
    parser.add_argument("--base", default="small-64", help="base preset (64 px)")
    parser.add_argument("--n-samples", type=int, default=512, help="generated videos per score")
    parser.add_argument("--n-real", type=int, default=1024, help="training clips for the real statistics")
    parser.add_argument("--classifier", default=None, help="classifier .safetensors (trained if absent)")
    parser.add_argument("--classifier-steps", type=int, default=600, help="steps to train a new classifier")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workdir", default=workdir, help="the run directories")
    parser.add_argument("--output", default=None, help="write the JSON record here")
    parser.add_argument("--markdown", default=None, help="write the Markdown table here")
    parser.add_argument("--plot", default=None, help=plot_help)
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="RECORD",
        help="finished runs of these records count as done: the records of parallel lanes (the same "
        "command with other --seeds or --variants and its own --output); their settings must match",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write the record, table and chart of the runs finished so far (this --output "
        "and --merge); the record says complete: false while runs are missing",
    )


def make_scorer(args):
    """The classifier (``args.classifier``, trained now if missing) and its IS/FID scorer on 64 px data.

    ``args`` carries ``classifier``, ``classifier_steps``, ``n_samples`` and ``n_real`` (driver options);
    the real statistics come from ``args.n_real`` seed-0 synthetic clips of 16 frames.
    """
    classifier = get_classifier(args.classifier, seed=0, steps=args.classifier_steps)
    real = SyntheticVideoDataset(args.n_real, 16, 64, seed=0, train=True)
    return classifier, ClassifierScorer(classifier, real=real, n_samples=args.n_samples, n_real=args.n_real)


def record_header(script: str, argv: list[str] | None, classifier) -> dict:
    """The fields every experiment record starts with: the command, date, device, threads, classifier."""
    return {
        "command": f"python benchmarks/{script} " + shlex.join(sys.argv[1:] if argv is None else argv),
        "date": datetime.date.today().isoformat(),
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "classifier": {"sha256": classifier.weights_sha256, "training": classifier.training_info},
    }


def write_outputs(record: dict, table: str, output: str | None, markdown: str | None) -> None:
    """Print the Markdown ``table``; write the JSON ``record`` to ``output`` and the table to ``markdown``."""
    print(table, end="")
    if output:
        write_json(output, record)
    if markdown:
        Path(markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(markdown).write_text(table)


def mean_std(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values))  # population std, as the official scripts


def write_json(path: str | Path, record: dict) -> None:
    """Write ``record`` atomically (a killed write leaves the previous record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)


def load_runs(path: str | Path | None, settings: dict) -> list[dict]:
    """The finished runs of an earlier record at ``path`` written with the same ``settings``."""
    if path is None or not Path(path).is_file():
        return []
    try:
        record = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not a JSON record ({e.msg}); delete it or use another --output") from None
    old = record.get("settings", {})
    changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
    if changed:
        raise UserError(
            f"{path}: written with other settings ({', '.join(changed)}): delete it, or use another --output "
            "and --workdir"
        )
    return list(record.get("runs", []))


def load_done(output: str | Path | None, merge: list[str], settings: dict) -> list[dict]:
    """The finished runs of the record at ``output`` (none if it does not exist yet) and of every record in
    ``merge`` (each must exist), all written with ``settings``. A run found in two records must agree on
    everything but its timing."""
    runs = {run["name"]: run for run in load_runs(output, settings)}

    def untimed(run: dict) -> dict:
        return {k: v for k, v in run.items() if k not in ("train_seconds", "timed_iterations", "sec_per_it")}

    for path in merge:
        if not Path(path).is_file():
            raise UserError(f"--merge {path}: no such record")
        for run in load_runs(path, settings):
            if untimed(runs.setdefault(run["name"], run)) != untimed(run):
                raise UserError(f"--merge {path}: run {run['name']} differs from its copy in another record")
    return list(runs.values())


def run_driver_jobs(jobs: list[Job], scorer, args, done: list[dict], on_run) -> list[dict]:
    """``run_jobs`` as the drivers run it (``add_experiment_options``): run directories in ``args.workdir``,
    job seed S scored with z seed 10,000 + S, and ``--report-only`` trains nothing."""
    return run_jobs(
        jobs,
        scorer,
        args.workdir,
        lambda job: 10_000 + job.fields["seed"],
        done,
        on_run,
        train_missing=not args.report_only,
    )


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def run_jobs(
    jobs: list[Job],
    scorer,  # ClassifierScorer (or anything with .score(generator, seed) -> dict)
    workdir: str | Path,
    score_seed: Callable[[Job], int],  # the z seed of the job's score
    done: list[dict] = (),  # finished runs read back from the record (``load_runs``)
    on_run: Callable[[list[dict]], None] = lambda runs: None,  # called with every run so far, after each job
    device: str = "cpu",
    train_missing: bool = True,  # False: only the finished runs (an interim report of a long experiment)
) -> list[dict]:
    """Train and score every job not in ``done``; returns the runs in job order. A job stopped by SIGINT or
    SIGTERM (``TrainingInterrupted``) ends the experiment with exit code 128 + signal, unrecorded."""
    runs = {run["name"]: run for run in done}
    todo = [job for job in jobs if job.name not in runs] if train_missing else []
    if not train_missing:
        missing = sum(job.name not in runs for job in jobs)
        summary = f"{len(jobs) - missing} of {len(jobs)} runs finished; {missing} untrained (report only)"
        print(summary, file=sys.stderr)
    elif len(runs) > 0:
        print(f"{len(runs)} of {len(jobs)} runs already in the record; {len(todo)} to go", file=sys.stderr)
    start = time.perf_counter()
    for k, job in enumerate(todo):
        out = Path(workdir) / job.name
        resumed_at = checkpoint_iteration(out / "checkpoints")  # > 0: an earlier process ran part of it
        t0 = time.perf_counter()
        try:
            train(job.cfg, RunOptions(out=out, device=device, progress=sys.stderr.isatty()))
        except TrainingInterrupted as e:  # resumable, not finished: never scored nor recorded as done
            print(f"{job.name}: stopped by {e}; rerun the command to resume it", file=sys.stderr, flush=True)
            raise SystemExit(e.exit_code) from None
        seconds = time.perf_counter() - t0
        generator = load_generator(out / "generator.safetensors", device)
        scores = scorer.score(generator, seed=score_seed(job))
        iterations = job.cfg.train.iterations
        timed = iterations - resumed_at  # the iterations this process ran (and timed)
        per_it = seconds / timed if timed > 0 else None  # None: the run was complete before this process
        runs[job.name] = {
            "name": job.name,
            **job.fields,
            "iterations": iterations,
            "dataset": json.loads((out / "dataset.json").read_text()),  # what the run trained on
            "train_seconds": seconds,  # this process's part (a resumed run's earlier part is not counted)
            "timed_iterations": timed,
            "sec_per_it": per_it,
            **scores,
        }
        on_run([runs[j.name] for j in jobs if j.name in runs])
        elapsed = time.perf_counter() - start
        eta = elapsed / (k + 1) * (len(todo) - k - 1)
        shown = ", ".join(f"{key} {value:.3f}" for key, value in scores.items() if math.isfinite(value))
        print(
            f"[{len(runs)}/{len(jobs)}] {job.name}: {timed} of {iterations} it in {format_seconds(seconds)} "
            f"({per_it or math.nan:.2f} s/it); {shown}; elapsed {format_seconds(elapsed)}, "
            f"ETA {format_seconds(eta)}",
            file=sys.stderr,
            flush=True,
        )
    return [runs[job.name] for job in jobs if job.name in runs]
