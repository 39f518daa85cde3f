"""``tganv2 evaluate {is,stats,fid,fvd,train-classifier}``: the evaluation protocols of reference.md §5.

Each command prints a one-line result and writes a JSON record of the protocol (N, loops, splits,
resolution, frames, render level, data split, seeds, and the sha256 of every weights file and checkpoint).
"""

from __future__ import annotations

import argparse
from typing import Any

from ..arguments import command_group, non_negative_int, positive_int, seed
from ..data import open_dataset
from ..device import DEVICE_HELP, resolve_device
from ..errors import UserError
from ..snapshot import load_snapshot
from .c3d import load_c3d
from .classifier import load_classifier, save_classifier, train_classifier
from .evaluate import evaluate_fid, evaluate_fvd, evaluate_is, real_stats_from_dataset
from .i3d import load_i3d
from .record import base_record, sha256_file, write_record
from .stats import FeatureStats

__all__ = ["add_commands"]


def _add_extractor_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("feature extractor (C3D weights, or the synthetic-data classifier)")
    group.add_argument("--c3d", metavar="FILE", help="official C3D weights conv3d_deepnetA_ucf.npz")
    group.add_argument("--c3d-mean", metavar="FILE", help="official C3D mean mean2.npz (key 'mean', 4-D)")
    group.add_argument(
        "--classifier",
        metavar="FILE",
        help="classifier .safetensors from `tganv2 evaluate train-classifier` (instead of --c3d/--c3d-mean)",
    )


def _add_run_options(
    parser: argparse.ArgumentParser,
    batch: int,
    n: int | None = 2048,
    loops: int = 10,
    seed_help: str = "seed; loop k draws z with seed + k (default 0)",
) -> None:
    if n is not None:
        parser.add_argument(
            "--n", type=positive_int, default=n, help=f"generated videos per loop (default {n})"
        )
        parser.add_argument(
            "--loops",
            type=positive_int,
            default=loops,
            help=f"loops with fresh samples; mean and population std are reported (default {loops})",
        )
    parser.add_argument(
        "--batch", type=positive_int, default=batch, help=f"videos per forward pass (default {batch})"
    )
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument("--seed", type=seed, default=0, help=seed_help)
    parser.add_argument("--no-progress", action="store_true", help="do not show a progress bar")


def _add_generator_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        metavar="G",
        help="generator snapshot (.safetensors) or training checkpoint (.pt)",
    )
    parser.add_argument(
        "--frames", type=positive_int, default=16, help="frames per generated video (default 16)"
    )
    parser.add_argument(
        "--render-level",
        type=positive_int,
        default=None,
        help="level rendered by the generator (default: the checkpoint's config, 4 = full resolution)",
    )
    parser.add_argument(
        "--weights",
        choices=["raw", "ema"],
        default=None,
        help="the trained G (raw) or its EMA copy (default: the EMA copy where the file holds one)",
    )


def _checked(command):
    """Resolve ``--device`` before any model is loaded (a failed record write is caught by ``_write``)."""

    def run(args: argparse.Namespace) -> int:
        args.device = str(resolve_device(args.device))
        return command(args)

    return run


def _load_extractor(args: argparse.Namespace, device: str):
    if args.classifier:
        if args.c3d or args.c3d_mean:
            raise UserError("give either --classifier or --c3d/--c3d-mean, not both")
        return load_classifier(args.classifier, device)
    if not (args.c3d and args.c3d_mean):
        raise UserError("a feature extractor is needed: --c3d FILE --c3d-mean FILE, or --classifier FILE")
    return load_c3d(args.c3d, args.c3d_mean, device)


def _load_generator(args: argparse.Namespace):
    """(LoadedGenerator, the record's file fields)."""
    loaded = load_snapshot(args.checkpoint, args.device, args.weights)
    level, n_levels = args.render_level, loaded.model.n_levels
    if level is not None and not 1 <= level <= n_levels:
        raise UserError(f"--render-level must be in 1..{n_levels} for {args.checkpoint}, got {level}")
    files = {
        "checkpoint": str(args.checkpoint),
        "checkpoint_sha256": sha256_file(args.checkpoint),
        "weights": loaded.weights,
    }
    return loaded, files


def _finish(record: dict[str, Any], out: str, summary: str) -> int:
    """Print the score first, so that a failed record write loses nothing, then write the record."""
    print(summary, flush=True)
    metric = record.pop("metric")
    path = _write(write_record, base_record(metric, **record), out)
    print(f"record: {path}")
    return 0


def _write(write, value, path):
    """``write(value, path)``, a failure as one line (the score was printed before)."""
    try:
        return write(value, path)
    except OSError as e:
        raise UserError(
            f"{path}: cannot write ({e.strerror or e}); the result printed above is not lost"
        ) from None


def _sampling_options(args: argparse.Namespace) -> dict:
    """The generated-sample options shared by is, fid and fvd."""
    return dict(
        n=args.n,
        loops=args.loops,
        batch=args.batch,
        seed=args.seed,
        n_frames=args.frames,
        render_level=args.render_level,
        progress=not args.no_progress,
    )


def _cmd_is(args: argparse.Namespace) -> int:
    extractor = _load_extractor(args, args.device)
    loaded, files = _load_generator(args)
    record = evaluate_is(
        loaded.model,
        extractor,
        splits=args.splits,
        config=loaded.config,
        **_sampling_options(args),
    )
    value = record["value"]
    return _finish(
        {**record, **files}, args.out, f"IS ({extractor.name}) = {value['mean']:.4f} ± {value['std']:.4f}"
    )


def _real_dataset(args: argparse.Namespace, n_frames: int, size: int, train: bool, **options):
    return open_dataset(
        None if args.data == "synthetic" else args.data,
        n_frames=n_frames,
        size=size,
        train=train,
        seed=args.seed,
        **options,
    )


def _cmd_stats(args: argparse.Namespace) -> int:
    extractor = _load_extractor(args, args.device)
    size = args.size or getattr(extractor, "size", 192)
    frames = getattr(extractor, "frames", 16)
    synthetic = args.data == "synthetic"
    options = (
        {"n_clips": args.n_real or 4096}
        if synthetic
        else {"xmargin": args.xmargin, "xflip": not args.no_xflip}
    )
    dataset = _real_dataset(args, frames, size, train=True, **options)
    # synthetic clips are the same in every epoch: one pass; real data: 10 passes like the official script
    n_real = len(dataset) if synthetic else args.n_real
    stats, passes = real_stats_from_dataset(
        dataset, extractor, n_real, args.batch, args.num_workers, not args.no_progress
    )
    # unreadable videos were dropped at open; count those that failed while decoding too (in-process)
    n_read = len(dataset) - dataset.n_failed
    print(f"real statistics: {stats.n_items} clips ({passes} passes over {n_read} videos)", flush=True)
    _write(lambda stats, path: stats.save(path), stats, args.out)
    record = base_record(
        f"stats_{extractor.name}",
        stats_file=str(args.out),
        data=str(args.data),
        split="train",
        augmentation="training (random start, x-crop, flip)" if not synthetic else "none (synthetic)",
        n_real=stats.n_items,
        passes=passes,
        videos=n_read,
        frames=frames,
        resolution=size,
        seed=args.seed,
        feature_dim=int(stats.mean.shape[0]),
        covariance_ddof=1,
        weights_sha256=dict(extractor.weights_sha256),
    )
    path = _write(write_record, record, args.record or f"{args.out}.json")
    print(f"wrote {args.out} (record: {path})")
    return 0


def _cmd_fid(args: argparse.Namespace) -> int:
    extractor = _load_extractor(args, args.device)
    real = FeatureStats.load(args.stats)
    loaded, files = _load_generator(args)
    record = evaluate_fid(
        loaded.model,
        extractor,
        real,
        config=loaded.config,
        **_sampling_options(args),
    )
    files.update(stats=str(args.stats), stats_sha256=sha256_file(args.stats))
    value = record["value"]
    return _finish(
        {**record, **files}, args.out, f"FID ({extractor.name}) = {value['mean']:.4f} ± {value['std']:.4f}"
    )


def _cmd_fvd(args: argparse.Namespace) -> int:
    detector = load_i3d(args.i3d, args.device)
    loaded, files = _load_generator(args)
    size = args.size or loaded.config.model.render_size(args.render_level)
    # 16 consecutive frames from a random start, centre crop, no flip (StyleGAN-V's real clips)
    dataset = _real_dataset(args, args.frames, size, train=True, center_crop=True, xflip=False)
    record = evaluate_fvd(
        loaded.model,
        detector,
        dataset,
        num_workers=args.num_workers,
        config=loaded.config,
        **_sampling_options(args),
    )
    record.update(data=str(args.data), split="train", real_clip="random start, centre crop, no flip")
    value = record["value"]
    return _finish({**record, **files}, args.out, f"FVD (i3d) = {value['mean']:.4f} ± {value['std']:.4f}")


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    model = train_classifier(
        size=args.size,
        frames=args.frames,
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
        width=args.width,
        n_train=args.n_train,
        n_val=args.n_val,
        device=args.device,
        progress=not args.no_progress,
    )
    save_classifier(args.out, model)
    info = model.training_info
    print(
        f"wrote {args.out}: held-out accuracy {info['val_accuracy']:.3f} on {info['n_val']} clips "
        f"({info['seconds']:.0f} s)"
    )
    return 0


def _generated_metric(commands, name: str, func, help: str, description: str) -> argparse.ArgumentParser:
    """An ``evaluate`` metric of generated videos: the generator options, ``--out NAME.json``, ``func``."""
    p = commands.add_parser(name, help=help, description=description)
    _add_generator_options(p)
    p.add_argument("--out", default=f"{name}.json", help=f"JSON record (default {name}.json)")
    p.set_defaults(func=_checked(func))
    return p


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser(
        "evaluate",
        help="IS, FID, FVD and real statistics (reference §5)",
        description="The paper's C3D Inception Score and FID, FVD with StyleGAN-V's I3D, and a download-free "
        "classifier score on the synthetic dataset.",
    )
    commands = command_group(evaluate, "evaluate_command", "METRIC")

    p = _generated_metric(
        commands,
        "is",
        _cmd_is,
        help="Inception Score: 2048 videos x 10 loops, splits 1 (reference §5.2)",
        description="The Inception Score of a generator with C3D (the paper's protocol: 2048 videos per "
        "loop, 10 loops, 1 split; mean and population std) or with the synthetic-data classifier.",
    )
    _add_extractor_options(p)
    _add_run_options(p, batch=8)
    p.add_argument(
        "--splits", type=positive_int, default=1, help="IS splits per loop (default 1, the TGANv2 protocol)"
    )

    p = commands.add_parser(
        "stats",
        help="real feature statistics (mean/cov npz) for FID (reference §5.3)",
        description="Feature mean and covariance of real training clips (training augmentation, 10 "
        "passes over the videos as the official script), written as an .npz for `evaluate fid`.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="training data: an .h5 file, a dataset folder, or 'synthetic' (the built-in dataset)",
    )
    _add_extractor_options(p)
    _add_run_options(p, batch=17, n=None, seed_help="seed of the random crops, flips and starts (default 0)")
    p.add_argument("--out", required=True, help="output statistics .npz (keys mean, cov, n_items)")
    p.add_argument("--record", default=None, help="JSON record (default: OUT.json)")
    p.add_argument(
        "--n-real",
        type=positive_int,
        default=None,
        help="real clips (default: 10 passes over the videos, as the official 5,610 x 17; "
        "synthetic: the number of synthetic clips, default 4096)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="clip size (default 192 for C3D, the classifier's size)",
    )
    p.add_argument(
        "--xmargin",
        type=non_negative_int,
        default=4,
        help="HDF5 training x-crop margin (default 4, official)",
    )
    p.add_argument("--no-xflip", action="store_true", help="no random horizontal flip (FaceForensics)")
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader workers (default 0)")
    p.set_defaults(func=_checked(_cmd_stats))

    p = _generated_metric(
        commands,
        "fid",
        _cmd_fid,
        help="FID against real statistics: 2048 videos x 10 loops (reference §5.3)",
        description="The Fréchet distance between the features of generated videos and the real "
        "statistics from `evaluate stats` (or the official npz), per loop; mean and population std.",
    )
    p.add_argument(
        "--stats", required=True, help="real statistics from `tganv2 evaluate stats` (or official npz)"
    )
    _add_extractor_options(p)
    _add_run_options(p, batch=8)

    p = _generated_metric(
        commands,
        "fvd",
        _cmd_fvd,
        help="FVD with StyleGAN-V's I3D: 2048 real vs 2048 generated 16-frame clips",
        description="Fréchet Video Distance with StyleGAN-V's I3D torchscript: real clips of 16 "
        "consecutive frames (random start, centre crop, no flip) against generated clips.",
    )
    p.add_argument("--data", required=True, help="real videos: an .h5 file, a dataset folder, or 'synthetic'")
    p.add_argument("--i3d", required=True, metavar="FILE", help="StyleGAN-V's i3d_torchscript.pt")
    _add_run_options(
        p, batch=8, loops=1, seed_help="seed of the real clips (videos and starts) and of z, loop k: seed + k"
    )
    p.add_argument(
        "--size", type=positive_int, default=None, help="real clip size (default: the generator's resolution)"
    )
    p.add_argument("--num-workers", type=non_negative_int, default=0, help="DataLoader workers (default 0)")

    p = commands.add_parser(
        "train-classifier",
        help="train the small 3D-CNN on the synthetic dataset (download-free metric)",
        description="Train the small 3D-CNN classifier of the 9 synthetic classes, the feature extractor "
        "of the download-free classifier-IS/FID (`--classifier FILE`, train.classifier=FILE).",
    )
    p.add_argument("--out", required=True, help="output classifier .safetensors")
    p.add_argument("--size", type=positive_int, default=64, help="clip resolution (default 64, the demo's)")
    p.add_argument("--frames", type=positive_int, default=16, help="clip length (default 16)")
    p.add_argument("--steps", type=positive_int, default=600, help="Adam steps (default 600)")
    p.add_argument("--batch", type=positive_int, default=32, help="clips per step (default 32)")
    p.add_argument("--width", type=positive_int, default=16, help="first-layer channels (default 16)")
    p.add_argument(
        "--n-train", type=positive_int, default=3600, help="training clips, rendered once (default 3600)"
    )
    p.add_argument(
        "--n-val", type=positive_int, default=450, help="held-out clips for the accuracy (default 450)"
    )
    p.add_argument("--seed", type=seed, default=0, help="seed of the data, init and batches (default 0)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--no-progress", action="store_true", help="do not show a progress bar")
    p.set_defaults(func=_checked(_cmd_train_classifier))
