"""The ``tganv2`` command.

Each area registers its own sub-commands through an ``add_commands(subparsers)`` function in its own
module (``tganv2.summary``, ``tganv2.data.cli``, ``tganv2.training.cli``, ``tganv2.metrics.cli``,
``tganv2.bench``), so this file only wires them together and turns user errors into one-line messages.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError, warnings_as_lines

# Modules that provide `add_commands(subparsers)`; each sub-command sets `func(args) -> int | None`.
COMMAND_MODULES = [
    "tganv2.summary",
    "tganv2.training.cli",
    "tganv2.data.cli",
    "tganv2.metrics.cli",
    "tganv2.interop.cli",
    "tganv2.bench.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tganv2",
        description="Train, sample and evaluate TGANv2 video GANs (multiple subsampling layers).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not name.startswith(str(e.name)):  # a real missing dependency inside the module
                raise
            continue
        module.add_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    with warnings_as_lines():
        return _run(argv)


def _run(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"tganv2: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tganv2: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
