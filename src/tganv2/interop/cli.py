"""``tganv2 convert chainer-generator``: import a generator snapshot written by the official Chainer code."""

from __future__ import annotations

import argparse

from ..arguments import command_group
from ..config import load_preset
from .chainer import convert_chainer_generator

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert",
        help="convert weights from the official Chainer code",
        description="Convert weights written by the official Chainer TGANv2 code to tganv2 files.",
    )
    kinds = command_group(convert, "convert_kind", "KIND")
    gen = kinds.add_parser(
        "chainer-generator",
        help="official generator_iter_N.npz -> tganv2 generator .safetensors",
        description=(
            "Import a generator snapshot (generator_iter_N.npz) trained with pfnet-research/tgan2, including "
            "the BatchNorm running statistics. Every npz key must map to one parameter of the generator "
            "built from the preset and overrides, with the same shape."
        ),
    )
    gen.add_argument("npz", help="the official generator snapshot, e.g. generator_iter_82000.npz")
    gen.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides on top of the preset, e.g. model.n_layers=3 model.clstm_ch=512",
    )
    gen.add_argument(
        "--preset",
        default="ucf101-192",
        help="config preset the snapshot was trained with (default: ucf101-192, the README UCF101 run)",
    )
    gen.add_argument("--out", required=True, help="output generator file (.safetensors)")
    gen.add_argument(
        "--prefix",
        default="",
        help="key prefix of the generator inside a larger npz, e.g. 'updater/model:gen/' (default: none)",
    )
    gen.set_defaults(func=_convert_chainer_generator)


def _convert_chainer_generator(args: argparse.Namespace) -> int:
    cfg = load_preset(args.preset, list(args.overrides))
    out = convert_chainer_generator(args.npz, args.out, cfg, prefix=args.prefix)
    print(
        f"wrote {out} (preset {cfg.preset}, {cfg.model.resolution} px, render level {cfg.model.render_level})"
    )
    return 0
