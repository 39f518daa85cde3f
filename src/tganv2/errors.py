"""User-facing errors: the CLI prints these as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import sys
import warnings


class UserError(Exception):
    """Bad user input: a missing file, a corrupt video, a wrong shape in a weights file, a bad config key.

    The message is one line that names the file or field and says what was expected.
    """

    exit_code = 2


class DataError(UserError):
    """A dataset file, folder or split list that cannot be used as given."""


class WeightsError(UserError):
    """A weights file with missing keys or wrong shapes."""


def show_warnings_as_lines() -> None:
    """Print tganv2's own warnings (``DataWarning`` ...) as one ``tganv2: warning: ...`` line on stderr,
    without Python's file, line number and source line; other warnings are shown as before. The CLI calls
    this once; DataLoader workers forked afterwards inherit it."""
    original = warnings.showwarning
    if getattr(original, "_tganv2_lines", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if not category.__module__.startswith("tganv2"):
            return original(message, category, filename, lineno, file, line)
        print(f"tganv2: warning: {message}", file=file or sys.stderr)

    show._tganv2_lines = True
    warnings.showwarning = show
