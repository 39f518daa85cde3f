"""``tganv2 train`` and ``tganv2 generate``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from ..arguments import non_negative_int, positive_float, positive_int, seed, writable_folder
from ..config import add_config_arguments, config_from_args
from ..data import to_uint8
from ..data.video import make_grid, write_video
from ..device import DEVICE_HELP, resolve_device
from ..errors import UserError
from ..snapshot import load_snapshot, snapshot_weights
from ..threads import free_cpu_cores, usable_cpu_cores
from .checkpoint import latest_checkpoint
from .loop import RunOptions, TrainingInterrupted, train

# train flags that are shorthands for config keys (the flags first, then the user's key=value overrides)
_TRAIN_FLAGS = (
    ("iterations", "train.iterations"),
    ("batch", "train.batch"),
    ("checkpoint_every", "train.checkpoint_every"),
    ("sample_every", "train.sample_every"),
    ("seed", "train.seed"),
    ("precision", "train.precision"),
    ("workers", "data.num_workers"),
)


def run_train(args: argparse.Namespace) -> int:
    overrides = [
        f"{key}={getattr(args, flag)}" for flag, key in _TRAIN_FLAGS if getattr(args, flag) is not None
    ]
    if args.compile:
        overrides.append("train.compile=true")
    cfg = config_from_args(args, overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.preset
    writable_folder(out)
    device = resolve_device(args.device)  # fails here, before any model is built
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif (
        device.type == "cpu"
        and "OMP_NUM_THREADS" not in os.environ
        and torch.get_num_threads() == usable_cpu_cores()
    ):
        # nobody chose a count: one thread per free core, so that a busy core does not hold up every step
        threads = free_cpu_cores()
        if threads < torch.get_num_threads():
            plural = "s" if threads > 1 else ""
            free = f"{threads} of {usable_cpu_cores()} CPU cores are free"
            print(f"tganv2 train: {free}; using {threads} thread{plural}")
            torch.set_num_threads(threads)

    options = RunOptions(
        out=out,
        data=args.data,
        device=args.device,
        stop_after=args.stop_after,
        progress=not args.no_progress,
        accept_changes=args.accept_changes,
    )
    try:
        last = train(cfg, options)
    except TrainingInterrupted as e:  # the loop printed where it stopped and how to resume
        return e.exit_code
    if last:
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        print(f"tganv2 train: done. {shown}")
    return 0


_OUTPUT_SUFFIXES = (".mp4", ".gif", ".npz")


def _generator_file(path: Path, weights: str | None) -> Path:
    """The file to read for ``--checkpoint PATH``: a run directory means its snapshot, or its latest
    checkpoint when the snapshot holds the other copy (``--weights``)."""
    if not path.is_dir():
        return path
    snapshot = path / "generator.safetensors"
    if weights is None or not snapshot.is_file() or snapshot_weights(snapshot) == weights:
        return snapshot
    return latest_checkpoint(path / "checkpoints") or snapshot


def run_generate(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in _OUTPUT_SUFFIXES:
        raise UserError(f"--out must end in .mp4, .gif or .npz, got '{out.name}'")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder, expected a .mp4, .gif or .npz file")
    writable_folder(out.parent)
    device = resolve_device(args.device)
    path = _generator_file(Path(args.checkpoint), args.weights)
    loaded = load_snapshot(path, device, args.weights)
    generator = loaded.model
    level = generator.render_level if args.level is None else args.level
    if not 1 <= level <= generator.n_levels:
        raise UserError(f"--level must be in 1..{generator.n_levels} for {path.name}, got {level}")
    if args.class_label is not None and not 0 <= args.class_label < generator.n_classes:
        raise UserError(
            f"--class must be in 0..{generator.n_classes - 1}, got {args.class_label}"
            if generator.n_classes
            else "--class needs a class-conditional generator; this one has model.n_classes=0"
        )
    rng = torch.Generator().manual_seed(args.seed)
    labels = generator.make_labels(args.n, args.class_label, device="cpu")  # (n,) balanced, or None
    videos = []
    with torch.no_grad():
        for start in range(0, args.n, args.batch):
            z = generator.make_z(min(args.batch, args.n - start), generator=rng, device=device)
            y = None if labels is None else labels[start : start + len(z)].to(device)
            videos.append(generator(z, y, n_frames=args.frames, render_level=level).clamp(-1, 1).cpu())
    videos = torch.cat(videos)  # (N, C, T, H, W) in [-1, 1]
    if out.suffix.lower() == ".npz":
        arrays = {"videos": to_uint8(videos).numpy()}  # (N, C, T, H, W) uint8
        if labels is not None:
            arrays["labels"] = labels.numpy()  # (N,) int64
        np.savez_compressed(out, **arrays)
    else:
        nrow = args.nrow or max(1, int(round(args.n**0.5)))
        write_video(out, make_grid(videos, nrow=nrow), fps=args.fps)
    classes = ""
    if labels is not None:
        classes = f", class {args.class_label}" if args.class_label is not None else ", classes balanced"
    print(
        f"tganv2 generate: wrote {args.n} videos of {videos.shape[2]} frames at "
        f"{videos.shape[-1]} px (level {level}, {loaded.weights} weights{classes}) to {out}"
    )
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a TGANv2 model (rerun the same command to resume)",
        description="Train TGANv2 with the official update rule. Rerunning the same command resumes from "
        "the latest checkpoint in --out; a rerun that would change the data or the maths of the run is "
        "refused (see --accept-changes). Multi-GPU/multi-node: "
        "torchrun --nproc_per_node=N --no-python tganv2 train ...",
    )
    add_config_arguments(p, "demo-64")
    p.add_argument(
        "--data",
        default=None,
        help="HDF5 file, run folder of train.h5, or folder of videos (default: the data recorded in --out "
        "when resuming, else the built-in synthetic dataset; 'synthetic' names it explicitly)",
    )
    p.add_argument("--out", default=None, help="run directory (default: runs/PRESET); reruns resume here")
    p.add_argument(
        "--iterations",
        type=positive_int,
        help="total iterations; the lr decays linearly to 0 over them (default: the preset's)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        help="per-device batch at level 1; global = batch × world size (default: the preset's)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=positive_int,
        help="iterations between checkpoints and snapshots (default: the preset's)",
    )
    p.add_argument(
        "--sample-every",
        type=positive_int,
        help="iterations between sample grids, .mp4 and .gif (default: the preset's)",
    )
    p.add_argument("--seed", type=seed, help="base seed; rank r uses seed + r (default: the preset's)")
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="autocast precision of the forward passes (default: the preset's, fp32)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the generator (opt-in)")
    p.add_argument(
        "--workers", type=non_negative_int, help="DataLoader worker processes (default: the preset's)"
    )
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: the cores free at the start, at most those this process may "
        "use; OMP_NUM_THREADS also sets it)",
    )
    p.add_argument(
        "--stop-after",
        type=positive_int,
        default=None,
        help="stop with a checkpoint after this many iterations in this process (default: run to the end)",
    )
    p.add_argument(
        "--accept-changes",
        action="store_true",
        help="resume even though the data or maths-changing settings differ from the run's; the change "
        "is recorded in OUT/log.jsonl",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=run_train)

    g = subparsers.add_parser(
        "generate",
        help="sample videos from a checkpoint or generator snapshot",
        description="Sample videos from a full checkpoint (.pt), a generator snapshot (.safetensors) or a "
        "run directory, on CPU or CUDA. Writes a grid video (.mp4/.gif) or the raw videos (.npz, uint8 "
        "(N, C, T, H, W)).",
    )
    g.add_argument(
        "--checkpoint", required=True, help="checkpoint .pt, snapshot .safetensors or run directory"
    )
    g.add_argument("--out", required=True, help="output file: .mp4, .gif (grid) or .npz (raw videos)")
    g.add_argument("--n", type=positive_int, default=36, help="number of videos")
    g.add_argument(
        "--frames", type=positive_int, default=None, help="frames per video (default: the trained length)"
    )
    g.add_argument("--level", type=positive_int, default=None, help="render level 1..L (default: the last)")
    g.add_argument("--seed", type=seed, default=0, help="seed of z")
    g.add_argument("--batch", type=positive_int, default=8, help="videos generated at once")
    g.add_argument("--nrow", type=positive_int, default=None, help="videos per grid row (default: √n)")
    g.add_argument("--fps", type=positive_float, default=8.0, help="frame rate of the written video")
    g.add_argument("--device", default="auto", help=DEVICE_HELP)
    g.add_argument(
        "--weights",
        choices=["raw", "ema"],
        default=None,
        help="the trained G (raw) or its EMA copy (default: the EMA copy where the run kept one)",
    )
    g.add_argument(
        "--class",
        dest="class_label",
        type=non_negative_int,
        default=None,
        metavar="K",
        help="class-conditional models: generate class K only (default: all classes, balanced)",
    )
    g.set_defaults(func=run_generate)
