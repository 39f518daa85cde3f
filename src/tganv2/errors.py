"""User-facing errors: the CLI prints these as one line (no traceback) and exits non-zero."""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def warnings_as_lines():
    """Within the block, tganv2's own warnings (``DataWarning`` ...) print as one ``tganv2: warning: ...``
    line, without Python's file, line number and source line; other warnings print as usual. The CLI runs
    every command inside it (DataLoader workers forked meanwhile inherit it). Only the formatting changes,
    so ``warnings.catch_warnings(record=True)`` and filters work as before."""
    original = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.startswith("tganv2"):
            return f"tganv2: warning: {message}\n"
        return original(message, category, filename, lineno, line)

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = original
