"""``tganv2 train`` and ``tganv2 generate``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_config_arguments, config_from_args
from ..errors import UserError


def run_train(args: argparse.Namespace) -> int:
    from .loop import RunOptions, train

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)

    overrides = []
    for flag, key in (
        ("iterations", "train.iterations"),
        ("batch", "train.batch"),
        ("checkpoint_every", "train.checkpoint_every"),
        ("sample_every", "train.sample_every"),
        ("seed", "train.seed"),
        ("precision", "train.precision"),
        ("workers", "data.num_workers"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={value}")
    if args.compile:
        overrides.append("train.compile=true")
    cfg = config_from_args(args, overrides)  # the flags first, then the user's key=value overrides
    out = Path(args.out) if args.out else Path("runs") / cfg.preset
    options = RunOptions(
        out=out, data=args.data, device=args.device, stop_after=args.stop_after, progress=not args.no_progress
    )
    last = train(cfg, options)
    if last:
        shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items())
        print(f"tganv2 train: done. {shown}")
    return 0


def _generator_file(path: Path, weights: str | None) -> Path:
    """The file to read for ``--checkpoint PATH``: a run directory means its snapshot, or its latest
    checkpoint when the snapshot holds the other copy (``--weights``)."""
    from ..snapshot import snapshot_weights
    from .checkpoint import latest_checkpoint

    if not path.is_dir():
        return path
    snapshot = path / "generator.safetensors"
    if weights is None or not snapshot.is_file() or snapshot_weights(snapshot) == weights:
        return snapshot
    return latest_checkpoint(path / "checkpoints") or snapshot


def run_generate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ..snapshot import load_snapshot

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_snapshot(_generator_file(Path(args.checkpoint), args.weights), device, args.weights)
    generator = loaded.model
    level = args.level or generator.render_level
    if not 1 <= level <= generator.n_levels:
        raise UserError(f"--level must be in 1..{generator.n_levels}, got {level}")
    if args.class_label is not None and not 0 <= args.class_label < generator.n_classes:
        raise UserError(
            f"--class must be in 0..{generator.n_classes - 1}, got {args.class_label}"
            if generator.n_classes
            else "--class needs a class-conditional generator; this one has model.n_classes=0"
        )
    out = Path(args.out)
    if out.suffix.lower() not in (".mp4", ".gif", ".npz"):
        raise UserError(f"--out must end in .mp4, .gif or .npz, got '{out.name}'")
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
        from ..data import to_uint8

        out.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"videos": to_uint8(videos).numpy()}  # (N, C, T, H, W) uint8
        if labels is not None:
            arrays["labels"] = labels.numpy()  # (N,) int64
        np.savez_compressed(out, **arrays)
    else:
        from ..data.video import make_grid, write_video

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
        "the latest checkpoint in --out. Multi-GPU/multi-node: "
        "torchrun --nproc_per_node=N --no-python tganv2 train ...",
    )
    add_config_arguments(p, "demo-64")
    p.add_argument(
        "--data",
        default=None,
        help="HDF5 file, run folder of train.h5, or folder of videos "
        "(default: the built-in synthetic dataset)",
    )
    p.add_argument("--out", default=None, help="run directory (default runs/PRESET); reruns resume here")
    p.add_argument("--iterations", type=int, help="total iterations; the lr decays linearly to 0 over them")
    p.add_argument("--batch", type=int, help="per-device batch at level 1 (global = batch × world size)")
    p.add_argument("--checkpoint-every", type=int, help="iterations between checkpoints and snapshots")
    p.add_argument("--sample-every", type=int, help="iterations between sample grids (.mp4 and .gif)")
    p.add_argument("--seed", type=int, help="base seed; rank r uses seed + r")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="autocast precision of the forward passes")
    p.add_argument("--compile", action="store_true", help="torch.compile the generator (opt-in)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is fastest on a busy 2-core machine)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop with a checkpoint after this many iterations in this process",
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
    g.add_argument("--n", type=int, default=36, help="number of videos (default 36)")
    g.add_argument("--frames", type=int, default=None, help="frames per video (default: the trained length)")
    g.add_argument("--level", type=int, default=None, help="render level 1..L (default: the last)")
    g.add_argument("--seed", type=int, default=0, help="seed of z")
    g.add_argument("--batch", type=int, default=8, help="videos generated at once")
    g.add_argument("--nrow", type=int, default=None, help="videos per grid row (default √n)")
    g.add_argument("--fps", type=float, default=8, help="frame rate of the written video")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda")
    g.add_argument(
        "--weights",
        choices=["raw", "ema"],
        default=None,
        help="the trained G (raw) or its EMA copy (default: the EMA copy where the run kept one)",
    )
    g.add_argument(
        "--class",
        dest="class_label",
        type=int,
        default=None,
        metavar="K",
        help="class-conditional models: generate class K only (default: all classes, balanced)",
    )
    g.set_defaults(func=run_generate)
