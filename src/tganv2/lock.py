"""An exclusive lock on an output folder, so two commands never write into the same one.

``OUT/.lock`` holds the owner's PID and command while it runs; the owner removes it at the end. The lock
itself is a POSIX record lock (``fcntl.lockf``) on that file: the kernel drops it when the owner exits,
however it dies (kill -9 included), so a lock file left behind by a dead process is simply taken over;
forked workers (DataLoader, process pools) do not inherit it. A live owner makes the second command stop
with one line naming it. ``data prepare`` uses the same lock under another name (``OUT/.prepare.lock``,
holding the bare pid) and its own wording (``tganv2.data.guards.prepare_lock``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from .errors import UserError

__all__ = ["FolderLock", "folder_lock"]

LOCK_NAME = ".lock"


class FolderLock:
    """``record``: what the lock file holds while we own it; ``refused(owner)``: the error for a folder in
    use, ``owner`` being the holder's record (empty when it has not written it yet)."""

    def __init__(
        self,
        folder: Path,
        command: str,
        name: str = LOCK_NAME,
        record: str | None = None,
        refused: Callable[[str], UserError] | None = None,
    ) -> None:
        self.folder, self.command = Path(folder), command
        self.path = self.folder / name
        self.record = f"PID {os.getpid()} ({command})\n" if record is None else record
        self.refused = refused or self._in_use
        self._file = None

    def _in_use(self, owner: str) -> UserError:
        owner = owner or "another process"
        return UserError(f"{self.folder} is in use by {owner}; wait for it to finish or use another --out")

    def acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            f = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
            try:
                fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                owner = f.read().strip()
                f.close()
                raise self.refused(owner) from None
            if _same_file(f, self.path):
                break
            f.close()  # the owner removed the file between our open and our lock: try the new one
        f.seek(0)
        f.truncate()
        f.write(self.record)
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked; a command that opened it meanwhile retries (acquire)
        with contextlib.suppress(OSError):
            fcntl.lockf(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(f, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
    except FileNotFoundError:
        return False


def folder_lock(folder: Path, command: str) -> FolderLock:
    """``with folder_lock(out, "tganv2 train"):`` — exclusive use of ``out`` (see the module docstring)."""
    return FolderLock(folder, command)
