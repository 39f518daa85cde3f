"""The training loop behind ``tganv2 train`` (reference.md §4): read it top to bottom.

Run directory (rank 0 writes, every rank reads):
    OUT/.lock                      held while a train command runs (a second one into OUT is refused)
    OUT/config.yaml                the effective config (data.path resolved); a rerun must match it
    OUT/dataset.json               the data's fingerprint (``rundir.py`` owns the record and the checks)
    OUT/checkpoints/ckpt-N.pt      full state, atomic, the last K kept; rerunning the command resumes
    OUT/generator.safetensors      latest generator snapshot (with BN running stats) + config metadata;
                                   the EMA copy when train.ema_half_life > 0 (metadata "weights": ema)
    OUT/log.jsonl                  scalars, one JSON object per logged iteration
    OUT/samples/iter_N.{mp4,gif}   a fixed z rendered at every level (the paper's Figure 4)
    OUT/tensorboard/               scalars and sample frames
"""

from __future__ import annotations

import copy
import math
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import TextColumn

from ..config import Config, build_generator, config_to_dict
from ..data import DataWarning, build_dataset, make_loader
from ..errors import UserError
from ..lock import folder_lock
from ..metrics.scorer import ClassifierScorer
from ..metrics.stats import FeatureStats
from ..progress import make_progress
from ..snapshot import CHECKPOINT_KEYS, save_generator
from . import rundir
from .checkpoint import (
    disk_full_error,
    fault_hook,
    is_disk_full,
    latest_checkpoint,
    load_latest_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
    state_nbytes,
)
from .device import configure_backends
from .distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_parameters,
    convert_sync_batchnorm,
    init_distributed,
)
from .ema import GeneratorEMA, make_ema
from .samples import SampleWriter
from .step import STATS, Trainer

__all__ = ["TrainingDiverged", "TrainingInterrupted", "RunOptions", "train"]


class TrainingDiverged(UserError):
    """A non-finite gradient or loss, or weights that must not be saved; names the last good checkpoint."""

    exit_code = 3


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped ``train`` before its last iteration, after a checkpoint was written:
    the run is resumable, not finished. Callers must not treat its snapshot as the final model."""

    def __init__(self, signum: int, iteration: int) -> None:
        super().__init__(f"signal {signum} at iteration {iteration}; checkpoint written")
        self.signum = signum
        self.iteration = iteration
        self.exit_code = 128 + signum  # the shell's convention for a process ended by a signal


def _diverged(out: Path, what: str) -> TrainingDiverged:
    good = latest_checkpoint(out / "checkpoints")  # every checkpoint on disk passed check_healthy
    return TrainingDiverged(
        f"{what}; stopped without saving. The last good checkpoint is {good if good else '(none yet)'}; "
        "lower train.lr or check the data"
    )


def _raise_if_diverged(out: Path, stats: dict) -> None:
    """Stop on the device-side flag that ``Trainer.read_stats`` returns (its updates were skipped)."""
    if not stats.pop("diverged"):
        return
    bad = [k for k in STATS if not math.isfinite(stats[k])]
    raise _diverged(out, f"non-finite {', '.join(bad) or 'gradients'} at iteration {stats['diverged_at']}")


@dataclass
class RunOptions:
    out: Path  # run directory
    data: str | None = None  # dataset path; None = built-in synthetic dataset
    device: str = "auto"  # auto | cpu | cuda
    stop_after: int | None = None  # stop (with a checkpoint) after this many iterations in this process
    progress: bool = True  # show the progress bar
    accept_changes: bool = False  # resume although the data or maths-changing settings differ (logged)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _check_classes(cfg: Config, dataset, data: str | None) -> None:
    """A conditional model (model.n_classes > 0) needs a dataset with exactly that many classes."""
    n = cfg.model.n_classes
    if n and dataset.n_classes != n:
        k = dataset.n_classes
        way_out = f"set model.n_classes={k}" if k else "train unconditionally (model.n_classes=0)"
        raise UserError(
            f"model.n_classes={n}, but the dataset {data or 'synthetic'} has {k} classes (from class "
            f"sub-folders or HDF5 categories; the synthetic dataset has 9): {way_out}"
        )


def _labelled(next_batch, data: str | None):
    """``next_batch`` that refuses a video without a class (label -1) in a conditional run."""

    def next_labelled():
        clips, labels = next_batch()
        if labels.min() < 0:  # labels stay on the CPU: no device sync
            raise UserError(f"{data}: a video without a class (label -1) in a class-conditional run")
        return clips, labels

    return next_labelled


def _resolve_run(cfg: Config, options: RunOptions, out: Path, info: DistInfo, resumable: bool):
    """The run's config (``data.path`` resolved; the recorded data when --data is not given), its
    dataset and fingerprint, and the accepted changes. Refuses a rerun that would change the run."""
    record = rundir.read_record(out)
    cfg = copy.deepcopy(cfg)
    cfg.data.path = rundir.resolve_data_path(options.data, cfg, record)
    with warnings.catch_warnings():
        if not info.is_main:  # every rank opens the same files: rank 0 alone reports the skipped ones
            warnings.simplefilter("ignore", DataWarning)
        dataset = build_dataset(cfg, train=True)
    _check_classes(cfg, dataset, cfg.data.path)
    fingerprint = rundir.dataset_fingerprint(dataset, cfg.data.path)
    changes, free = {}, {}
    if record is not None and resumable:
        changes = rundir.resume_changes(record, cfg, fingerprint)
        if changes and not options.accept_changes:
            raise rundir.refuse_changes(out, changes)
        free = rundir.free_changes(record, cfg)
    return cfg, dataset, fingerprint, changes, free


def _on_main(info: DistInfo, action) -> None:
    """Run ``action`` on rank 0 only; a UserError there stops every rank (no rank waits forever)."""
    error = None
    if info.is_main:
        try:
            action()
        except UserError as e:
            error = e
    messages = all_gather_objects(str(error) if error else None)
    if error is not None:
        raise error
    if messages[0]:
        raise UserError(messages[0])


class _StopFlag:
    """SIGINT/SIGTERM set a flag; the loop checkpoints and exits cleanly at the end of the iteration."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train(cfg: Config, options: RunOptions) -> dict:
    """Train (or resume) the run in ``options.out``; returns the last logged scalars.

    Raises ``TrainingInterrupted`` when SIGINT/SIGTERM stopped the run early (after its checkpoint)."""
    info, device = init_distributed(options.device)
    out = Path(options.out)
    lock = folder_lock(out, "tganv2 train")
    _on_main(info, lock.acquire)  # one train command per run directory
    try:
        return _train(cfg, options, info, device, out)
    finally:
        lock.release()


def _train(cfg: Config, options: RunOptions, info: DistInfo, device: torch.device, out: Path) -> dict:
    checkpoints = out / "checkpoints"
    cfg, dataset, fingerprint, changes, free = _resolve_run(
        cfg, options, out, info, resumable=latest_checkpoint(checkpoints) is not None
    )
    configure_backends(device)

    # --- models, optimisers, the per-rank random stream ------------------------------------------
    _seed_everything(cfg.train.seed + info.rank)
    generator = convert_sync_batchnorm(build_generator(cfg), device)
    trainer = Trainer(cfg, device, generator=generator, seed=cfg.train.seed + info.rank)
    broadcast_parameters(trainer.generator)  # every rank starts from rank 0's weights
    broadcast_parameters(trainer.discriminator)

    # --- resume by rerunning the same command ------------------------------------------------------
    if info.is_main:
        remove_stale_temporaries(checkpoints)  # what a killed save left (we hold the lock)
        remove_stale_temporaries(out)
    ckpt_path, checkpoint, damaged = load_latest_checkpoint(checkpoints)
    barrier()  # every rank has read the damaged files before rank 0 moves them
    if info.is_main:
        for path, reason in damaged:
            path.replace(path.with_name(path.name + ".damaged"))
            print(
                f"tganv2: warning: {reason}; moved it to {path.name}.damaged and resuming from "
                f"{ckpt_path.name if ckpt_path else 'the start'}",
                file=sys.stderr,
            )
    if ckpt_path is not None:
        trainer.load_state_dict(checkpoint["trainer"], rank=info.rank)
    start = trainer.iteration
    ema = make_ema(cfg, trainer.generator, info.world_size) if info.is_main else None  # rank 0 samples
    if ema is not None and ckpt_path is not None and CHECKPOINT_KEYS["ema"] in checkpoint:
        ema.load_state_dict(checkpoint[CHECKPOINT_KEYS["ema"]])
    weights = "ema" if ema is not None else "raw"

    def sampled() -> torch.nn.Module:  # the generator behind grids, scores and the snapshot
        return ema.averaged() if ema is not None else trainer.generator

    if info.is_main:
        log_path = out / "log.jsonl"
        rundir.truncate_log(log_path, start)  # the records after the checkpoint are written again
        if changes or free:
            rundir.append_log(
                log_path,
                {
                    "iteration": start,
                    "event": "resumed with changed settings",
                    "accepted": {k: list(v) for k, v in changes.items()},
                    "free": {k: list(v) for k, v in free.items()},
                },
            )
        rundir.write_record(out, cfg, fingerprint)
        where = f"resuming from {ckpt_path.name} at iteration {start}" if ckpt_path else "starting"
        print(f"tganv2 train: {where}; run directory {out}; device {device}; world size {info.world_size}")
        if changes:
            shown = ", ".join(f"{k} {a} → {b}" for k, (a, b) in changes.items())
            print(f"tganv2 train: accepted changed settings: {shown}")

    # --- data: each rank its own shard, resumable at the exact batch ---------------------------------
    loader = make_loader(
        dataset,
        cfg.train.batch,
        num_workers=cfg.data.num_workers,
        seed=cfg.train.seed,
        rank=info.rank,
        world_size=info.world_size,
        start_batch=start * cfg.train.n_dis,
        pin_memory=device.type == "cuda",
    )
    # endless: (clips uint8 (B, C, T, H, W), labels (B,)), pinned on CUDA; the Trainer converts on the device
    next_real = iter(loader).__next__
    if cfg.model.n_classes:
        next_real = _labelled(next_real, cfg.data.path)

    writer = SampleWriter(out, cfg, device, dataset, resume_iteration=start) if info.is_main else None
    scorer = _make_scorer(cfg, out, dataset, device) if info.is_main else None
    if writer is not None and start == 0:
        writer.write(sampled(), 0, weights=weights)
        _score(scorer, writer, sampled(), 0)
    if ckpt_path is None:  # the initial weights: a good checkpoint to name if the first steps diverge
        _checkpoint(out, cfg, trainer, info, ema)
    end = (
        cfg.train.iterations
        if options.stop_after is None
        else min(cfg.train.iterations, start + options.stop_after)
    )
    last: dict = {}
    progress = _Progress(start, cfg.train.iterations, enabled=options.progress and info.is_main)
    window_seconds, window_iterations = 0.0, 0  # host time of the steps since the last read
    with _StopFlag() as stop, progress:
        for it in range(start + 1, end + 1):
            t0 = time.perf_counter()
            trainer.step(next_real)  # queues the work; nothing is read back on an ordinary iteration
            if ema is not None:
                ema.update(trainer.generator, trainer.iteration)  # queued too: no host sync
            window_seconds += time.perf_counter() - t0
            window_iterations += 1
            progress.update(it, window_seconds / window_iterations)
            if it % cfg.train.log_every == 0 or it == end:
                t0 = time.perf_counter()
                scalars = trainer.read_stats()  # the one device read: means since the last read, the flag
                _raise_if_diverged(out, scalars)  # removes the flag from the scalars
                window_seconds += time.perf_counter() - t0  # the wait for the queued steps
                scalars["sec_per_it"] = window_seconds / window_iterations
                window_seconds, window_iterations = 0.0, 0
                if device.type == "cuda":
                    scalars["peak_mem_gb"] = torch.cuda.max_memory_allocated(device) / 2**30
                progress.update(it, scalars["sec_per_it"], scalars)
                if info.is_main:
                    last = {"iteration": it, **scalars}
                    writer.log(it, scalars)
            if writer is not None and it % cfg.train.sample_every == 0:
                last.update(writer.write(sampled(), it, weights=weights))
            if cfg.train.eval_every and it % cfg.train.eval_every == 0 and it != end:
                _score(scorer, writer, sampled(), it)
            stopping = stop.signal is not None or it == end
            if it % cfg.train.checkpoint_every == 0 or stopping:
                _checkpoint(out, cfg, trainer, info, ema)
            if stop.signal is not None:
                break
    interrupted = stop.signal is not None and trainer.iteration < end  # a signal during the last one: done
    if writer is not None:
        ran = trainer.iteration > start
        if ran and not interrupted:  # the end of the run (not a SIGTERM/SIGINT stop): final samples
            if trainer.iteration % cfg.train.sample_every:
                last.update(writer.write(sampled(), trainer.iteration, weights=weights))
            last.update(_score(scorer, writer, sampled(), trainer.iteration))
        elif not ran:
            _save_snapshot(out, cfg, trainer, ema)  # a kill between checkpoint and snapshot left it behind
            print(
                f"tganv2 train: the run in {out} is complete at iteration {trainer.iteration} "
                "(raise --iterations to extend it)"
            )
        writer.close()
    if interrupted:
        stopped = TrainingInterrupted(stop.signal, trainer.iteration)
        if info.is_main:
            print(f"\ntganv2 train: {stopped}; rerun the same command to resume", flush=True)
        raise stopped
    return last


def _checkpoint(out: Path, cfg: Config, trainer: Trainer, info: DistInfo, ema: GeneratorEMA | None) -> None:
    """Save the trainer's whole resumable state, only if it is good (``Trainer.check_healthy``)."""
    problem = trainer.check_healthy()  # reads the device-side flag: allowed at checkpoint time
    if problem is not None:
        stats = trainer.read_stats()
        where = stats.get("diverged_at", trainer.iteration)
        raise _diverged(out, f"{problem} at iteration {where}")
    trainer_state = trainer.state_dict()  # a collective: every rank's random streams
    if info.is_main:
        state = {
            "trainer": trainer_state,
            "generator": trainer_state["generator"],  # for load_generator / tganv2 generate
            "config": config_to_dict(cfg),
        }
        if ema is not None:
            state[CHECKPOINT_KEYS["ema"]] = ema.state_dict()  # for load_snapshot(weights="ema")
        save_checkpoint(out / "checkpoints", trainer.iteration, state, cfg.train.keep_checkpoints)
        fault_hook("snapshot", trainer.iteration)
        _save_snapshot(out, cfg, trainer, ema)
    barrier()


def _save_snapshot(out: Path, cfg: Config, trainer: Trainer, ema: GeneratorEMA | None) -> None:
    snapshot, weights = (ema.averaged(), "ema") if ema is not None else (trainer.generator, "raw")
    path = out / "generator.safetensors"
    try:
        save_generator(path, snapshot, cfg, weights=weights, iteration=str(trainer.iteration))
    except Exception as e:  # noqa: BLE001 - safetensors reports a full disk as its own error type
        if is_disk_full(e) or is_disk_full(e.__cause__) or "No space" in str(e):
            raise disk_full_error(path, state_nbytes(snapshot.state_dict())) from None
        raise


def _make_scorer(cfg: Config, out: Path, dataset, device: torch.device):
    """Classifier-IS/FID from cached real statistics (``OUT/classifier_real_stats.npz``), if configured."""
    if not cfg.train.classifier:
        return None
    cache = out / "classifier_real_stats.npz"
    real = FeatureStats.load(cache) if cache.is_file() else dataset
    scorer = ClassifierScorer(
        cfg.train.classifier,
        real=real,
        n_samples=cfg.train.eval_samples,
        device=device,
        n_real=min(cfg.train.eval_real, 10 * len(dataset)),
    )
    if not cache.is_file():
        scorer.real_stats.save(cache)
    return scorer


def _score(scorer, writer, generator: torch.nn.Module, iteration: int) -> dict:
    if scorer is None:
        return {}
    scores = scorer.score(generator, seed=0)  # the same z every time: comparable over the run
    print(
        f"tganv2 train: iteration {iteration}: classifier-IS {scores['cls_is']:.3f}, "
        f"classifier-FID {scores['cls_fid']:.2f}"
    )
    writer.log(iteration, scores)
    return scores


class _Progress:
    """A rich progress bar with iterations/s, ETA and the latest losses (rank 0 only)."""

    def __init__(self, start: int, total: int, enabled: bool) -> None:
        self.enabled, self.start, self.total = enabled, start, total
        self.bar = None

    def __enter__(self):
        if self.enabled:
            self.bar = make_progress(
                middle=(TextColumn("{task.fields[rate]}"),), tail=(TextColumn("{task.fields[losses]}"),)
            )
            self.bar.__enter__()
            self.task = self.bar.add_task(
                "[bold]train", total=self.total, completed=self.start, rate="", losses=""
            )
        return self

    def update(self, it: int, sec_per_it: float, scalars: dict | None = None) -> None:
        """Every iteration the rate (host time); the losses only when they were read (``scalars``)."""
        if self.bar is None:
            return
        fields = {"rate": f"{1.0 / max(sec_per_it, 1e-9):.2f} it/s"}
        if scalars is not None:
            fields["losses"] = " ".join(
                f"{k[5:] if k.startswith('loss_') else k} {scalars[k]:.3f}"
                for k in ("loss_gen", "loss_dis", "loss_gp")
                if k in scalars
            )
        self.bar.update(self.task, completed=it, **fields)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
