"""The one progress-bar layout of the package (rich): description, bar, M/N, elapsed, ETA."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(middle: tuple = (), tail: tuple = ()):
    """A ``rich.progress.Progress`` on stderr; ``middle`` columns follow M/N, ``tail`` columns end it."""
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *middle,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        *tail,
    ]
    return Progress(*columns, console=Console(stderr=True))
