"""A still figure of generated videos for the README: one row per video, every ``--stride``-th frame.

Rows come from the run-independent z of the sample grids (``tganv2.training.samples.fixed_z``), rendered in
eval mode at the generator's final level; ``--real N`` adds N rows of held-out synthetic clips below a
gap, for comparison. Frames are upscaled by nearest neighbour (``--scale``)::

    .venv/bin/python benchmarks/sample_figure.py runs/demo-64/generator.safetensors --out samples.png

The argument is a generator snapshot (``generator.safetensors``) or a training checkpoint (``ckpt-*.pt``).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from PIL import Image

from tganv2.data import to_float, to_uint8
from tganv2.data.synthetic import SyntheticVideoDataset
from tganv2.errors import UserError
from tganv2.snapshot import load_snapshot
from tganv2.training.samples import fixed_z, render_levels

GAP = 2  # pixels between tiles
SEPARATOR = 8  # pixels between the generated and the real rows


def tile_rows(videos: torch.Tensor, stride: int, scale: int) -> np.ndarray:
    """``(N, C, T, H, W)`` in [−1, 1] → an ``(rows, width, 3)`` uint8 image, every ``stride``-th frame."""
    frames = to_uint8(videos[:, :, ::stride]).permute(0, 2, 3, 4, 1).numpy()  # (N, T', H, W, C)
    n, t, h, w, _ = frames.shape
    frames = frames.repeat(scale, axis=2).repeat(scale, axis=3)
    h, w = h * scale, w * scale
    image = np.zeros((n * (h + GAP) - GAP, t * (w + GAP) - GAP, 3), np.uint8)
    for i in range(n):
        for j in range(t):
            image[i * (h + GAP) : i * (h + GAP) + h, j * (w + GAP) : j * (w + GAP) + w] = frames[i, j]
    return image


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("snapshot", help="generator .safetensors snapshot or ckpt-*.pt checkpoint")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--rows", type=int, default=6, help="generated videos, one per row (default 6)")
    p.add_argument("--real", type=int, default=0, help="held-out real clips below them (default 0)")
    p.add_argument("--stride", type=int, default=2, help="show every k-th frame (default 2)")
    p.add_argument("--scale", type=int, default=1, help="nearest-neighbour upscaling (default 1)")
    args = p.parse_args(argv)
    try:
        loaded = load_snapshot(args.snapshot)
    except UserError as e:
        print(f"sample_figure: {e}", file=sys.stderr)
        return 2
    generator, cfg = loaded.model, loaded.config
    level = generator.render_level
    fakes = render_levels(generator, fixed_z(generator, args.rows), levels=[level])  # (rows, C, T, H, W)
    image = tile_rows(fakes, args.stride, args.scale)
    if args.real:
        size = cfg.model.render_size(level)
        dataset = SyntheticVideoDataset(n_clips=args.real, n_frames=fakes.shape[2], size=size, train=False)
        reals = torch.stack([to_float(dataset.get_clip(i, 0)[0]) for i in range(args.real)])
        real_image = tile_rows(reals, args.stride, args.scale)
        gap = np.full((SEPARATOR, image.shape[1], 3), 255, np.uint8)
        image = np.concatenate([image, gap, real_image])
    Image.fromarray(image).save(args.out)
    print(f"wrote {args.out}: {args.rows} generated rows (level {level}), {args.real} real rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
