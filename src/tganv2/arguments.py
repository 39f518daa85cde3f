"""Argument parsing shared by every ``tganv2`` command: one-line errors, defaults in the help, value types.

``Parser`` is the parser class of the whole command tree (sub-command parsers inherit it): a bad
argument prints one ``tganv2: error: ...`` line (no usage block) and exits 2, and ``--help`` shows
each option's default. The ``positive_int`` family are ``type=`` callables that refuse out-of-range
values while parsing, before any model or dataset is built.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path

from .errors import UserError

__all__ = [
    "Parser",
    "HelpFormatter",
    "positive_int",
    "non_negative_int",
    "positive_float",
    "seed",
    "writable_folder",
]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default.

    Flags (``store_true``) and options whose default is ``None`` show no ``(default: None)``: their help
    says in words what happens when they are left out.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            if action.nargs == argparse.ZERO_OR_MORE and not action.default:
                return text
            return f"{text} (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with one-line errors and defaults shown in the help."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # noqa: D401 - argparse's hook
        # "argument --n: must be >= 1, got 0" -> "--n must be >= 1, got 0", as the commands' own errors
        message = re.sub(r"^argument ([^:]+): must ", r"\1 must ", message)
        print(f"tganv2: error: {message}", file=sys.stderr)
        sys.exit(2)


def _integer(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _integer(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _integer(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def seed(text: str) -> int:
    """A seed in 0 .. 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be in 0..4294967295, got {text}")
    return value


def command_group(parser: argparse.ArgumentParser, dest: str, metavar: str) -> argparse._SubParsersAction:
    """Make ``parser`` a command of sub-commands (added to the returned action); given alone, it prints its
    help and exits with 2."""
    parser.set_defaults(func=lambda args: parser.print_help() or 2)
    return parser.add_subparsers(dest=dest, metavar=metavar)


def writable_folder(folder: str | Path, flag: str = "--out") -> Path:
    """Create ``folder`` (and its parents) and check it can be written; a one-line ``UserError`` if not.

    Commands call this before they build a model or read a dataset, so a bad ``--out`` costs nothing.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{flag} {folder}: is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {folder}: cannot create the folder ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {folder}: not writable (permission denied)")
    return folder
