"""User-facing errors: the CLI prints these as one line (no traceback) and exits non-zero."""

from __future__ import annotations


class UserError(Exception):
    """Bad user input: a missing file, a corrupt video, a wrong shape in a weights file, a bad config key.

    The message is one line that names the file or field and says what was expected.
    """

    exit_code = 2


class DataError(UserError):
    """A dataset file, folder or split list that cannot be used as given."""


class WeightsError(UserError):
    """A weights file with missing keys or wrong shapes."""
