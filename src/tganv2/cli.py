"""The ``tganv2`` command.

Each area registers its own sub-commands through an ``add_commands(subparsers)`` function in its own
module (``tganv2.summary``, ``tganv2.data.cli``, ``tganv2.training.cli``, ``tganv2.metrics.cli``,
``tganv2.bench``), so this file only wires them together and turns user errors into one-line messages.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

# How OpenMP threads wait at the end of each parallel region (docs/benchmarks.md, "the OpenMP wait
# policy"). Threads that sleep at once (PASSIVE) pay a wake-up at every region: a demo step on an idle
# 2-core box takes 1.28x as long as with a short spin. Spinning threads slow a step many times over when
# another job holds a core they need; `tganv2 train`'s default thread count leaves the cores that are busy
# at its start alone. So: PASSIVE, and for libgomp (Linux torch), whose GOMP_SPINCOUNT overrides the
# policy, a short spin first. The runtime reads both once, when torch loads, so they are set here, before
# any module of the command imports torch; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["GOMP_SPINCOUNT"] = "10000"  # spins (not a time); 1,000 is too few (docs/benchmarks.md)

from . import __version__
from .arguments import Parser
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
    parser = Parser(
        prog="tganv2",
        description="Train, sample and evaluate TGANv2 video GANs (multiple subsampling layers).",
    )
    parser.add_argument("--version", action="version", version=f"tganv2 {__version__}")
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # a bad argument (one line printed by Parser.error), --help, --version
        return int(e.code or 0)
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
    except OSError as e:  # a folder that is not writable, a full disk, ...: one line naming the file
        print(f"tganv2: error: {os_error_message(e)}", file=sys.stderr)
        return 2


_HINTS = {
    errno.ENOSPC: "free some space and rerun",
    errno.EDQUOT: "free some space and rerun",
    errno.EROFS: "choose a writable location",
    errno.EACCES: "check the permissions or choose another location",
    errno.EPERM: "check the permissions or choose another location",
}


def os_error_message(e: OSError) -> str:
    """``PATH: No space left on device (free some space and rerun)`` for an OSError from the file system."""
    where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    what = e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0]
    hint = _HINTS.get(e.errno)
    return f"{where + ': ' if where else ''}{what}{f' ({hint})' if hint else ''}"


if __name__ == "__main__":
    sys.exit(main())
