"""``tganv2 summary``: parameter counts, per-level training shapes and the inference output shape.

Shapes come from a forward pass of the real modules on the ``meta`` device (no memory, no compute), so the
summary describes the model that will actually run, including the discriminator's length-3 quirk.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from .arguments import positive_int
from .config import (
    PRESETS,
    Config,
    add_config_arguments,
    build_discriminator,
    build_generator,
    config_from_args,
)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_summary(cfg: Config, batch: int | None = None) -> dict:
    """Everything ``tganv2 summary`` prints, as a JSON-ready dict."""
    batch = cfg.train.batch if batch is None else batch
    with torch.device("meta"):
        generator = build_generator(cfg)
        discriminator = build_discriminator(cfg)
        z = torch.empty(batch, cfg.model.z_dim)
        y = torch.zeros(batch, dtype=torch.long) if cfg.model.n_classes else None
        draws = cfg.model.layer_draws(batch, np.random.default_rng(0))  # shapes do not depend on them
        levels = generator.train()(z, y, draws=draws)
        block_shapes: list[list[list[int]]] = []
        for level_d, video in zip(discriminator.levels, levels):
            block_shapes.append([list(h.shape[1:]) for h in level_d.block_outputs(video)])  # (C, T, H, W)
        out = generator.eval()(z[:1], None if y is None else y[:1])
    return {
        "preset": cfg.preset,
        "generator": {
            "parameters": _count(generator),
            "fc": _count(generator.fc),
            "clstm": _count(generator.clstm),
            "blocks": [_count(b) for b in generator.blocks],
            "renderers": [_count(r) for r in generator.renderers],
        },
        "discriminator": {
            "parameters": _count(discriminator),
            "per_level": [_count(d) for d in discriminator.levels],
            "block_shapes": block_shapes,  # per level, per block: (C, T, H, W)
            "mbstd_group": cfg.model.d_mbstd_group,  # 0: the official D (no minibatch std)
        },
        "batch": batch,
        # (batch, frames, height, width) of each level video in training
        "train_levels": [[v.shape[0], v.shape[2], v.shape[3], v.shape[4]] for v in levels],
        "inference": {
            "render_level": cfg.model.render_level,
            "shape": list(out.shape),  # (N, C, T, H, W) for N = 1
        },
    }


def print_summary(info: dict) -> None:
    console = Console()
    g, d = info["generator"], info["discriminator"]
    console.print(f"[bold]tganv2 model summary[/bold]: preset [cyan]{info['preset']}[/cyan]")
    console.print(
        f"generator parameters     {g['parameters']:>14,}  (fc {g['fc']:,}, ConvLSTM {g['clstm']:,}, "
        f"blocks {sum(g['blocks']):,}, renderers {sum(g['renderers']):,})"
    )
    console.print(
        f"discriminator parameters {d['parameters']:>14,}  ({len(d['per_level'])} levels × "
        f"{d['per_level'][0]:,})"
        + (
            f"; minibatch std over groups of {d['mbstd_group']} before the last block"
            if d["mbstd_group"]
            else ""
        )
    )
    table = Table(title=f"training levels (batch {info['batch']} at level 1)")
    for col in ("level", "batch", "frames", "height", "width", "D block outputs (C, T, H, W)"):
        table.add_column(col, justify="right" if col != "D block outputs (C, T, H, W)" else "left")
    for k, (shape, blocks) in enumerate(zip(info["train_levels"], d["block_shapes"]), start=1):
        blocks_text = " → ".join("×".join(str(v) for v in b) for b in blocks)
        table.add_row(str(k), *(str(v) for v in shape), blocks_text)
    console.print(table)
    inf = info["inference"]
    console.print(
        f"inference output (render level {inf['render_level']}): (N, C, T, H, W) = "
        f"(N, {', '.join(str(v) for v in inf['shape'][1:])}); any length via --frames"
    )


def run_summary(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    info = model_summary(cfg, args.batch)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print_summary(info)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "summary",
        help="print parameter counts and per-level shapes of a preset",
        description="Print parameter counts, the per-level (batch, frames, height, width) in training, "
        "the discriminator's per-block shapes and the inference output shape of a preset.",
    )
    add_config_arguments(p, "ucf101-192")
    p.add_argument(
        "--batch", type=positive_int, default=None, help="level-1 batch to show (default: train.batch)"
    )
    p.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    p.set_defaults(func=run_summary)

    presets = subparsers.add_parser("presets", help="list the presets", description="List the presets.")
    presets.set_defaults(func=_list_presets)


def _list_presets(args: argparse.Namespace) -> int:
    for name, overrides in PRESETS.items():
        text = " ".join(f"{k}={v}" for k, v in overrides.items()) or "(the official UCF101 run)"
        print(f"{name:<20} {text}")
    return 0
