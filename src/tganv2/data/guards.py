"""Safety around ``data prepare``: one run per output folder, failed writes as one line, and workers that
exit with their parent.

* ``prepare_lock(out)``: ``OUT/.prepare.lock``, the lock of ``tganv2.lock`` (released by the kernel when the
  process dies, whatever kills it) holding the pid; a second run into the same folder gets one line naming it.
* ``writing(path)``: an ``OSError`` while writing ``path`` becomes a one-line ``DataError`` naming it
  (a full disk says so).
* ``init_worker(parent_pid)``: the pool initializer; on Linux it arms ``PR_SET_PDEATHSIG`` (SIGKILL when the
  parent dies, even by ``kill -9``), elsewhere a thread watches the parent pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path

import torch

from ..errors import DataError
from ..lock import FolderLock
from .video import read_error_reason

__all__ = ["prepare_lock", "writing", "init_worker"]


def _disk_full(error: OSError) -> bool:
    text = str(error)
    return error.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "errno = 28" in text


@contextlib.contextmanager
def writing(path: Path):
    """Turn a failed write of ``path`` into one line naming it (a full disk, a read-only folder)."""
    try:
        yield
    except OSError as e:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        if _disk_full(e):
            raise DataError(
                f"{path}: no space left on device; free some space and rerun (finished videos are kept; "
                "the conversion needs about twice the final size)"
            ) from None
        raise DataError(f"{path}: cannot write ({read_error_reason(e)})") from None


@contextlib.contextmanager
def prepare_lock(out: Path):
    """Hold ``OUT/.prepare.lock`` (``tganv2.lock``: released when the process dies) for one run at a time;
    the file holds the pid and is removed at the end."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(
        out,
        "tganv2 data prepare",
        name=".prepare.lock",
        record=str(os.getpid()),
        refused=lambda holder: DataError(
            f"{out}: another `tganv2 data prepare` (pid {holder or '?'}) is writing into this folder; "
            "wait for it to finish or choose another --out"
        ),
    )
    with writing(lock.path):
        lock.acquire()
    try:
        yield
    finally:
        lock.release()  # removes the file while still holding the lock: the next run creates a new one


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def init_worker(parent_pid: int) -> None:
    """Worker set-up: one torch thread, and exit as soon as the parent process dies."""
    torch.set_num_threads(1)
    watched = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            watched = libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not watched:
        threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
