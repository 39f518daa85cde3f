"""Full training checkpoints: written atomically, the last K kept, resumed by rerunning the same command.

A checkpoint holds G, D, both optimisers and lr schedules, the iteration, the config, and the RNG states of
python, numpy and torch (and CUDA where present), plus the training ``rng`` of every rank. It contains only
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..snapshot import atomic_path

__all__ = [
    "DiskFull",
    "save_checkpoint",
    "latest_checkpoint",
    "load_checkpoint",
    "load_latest_checkpoint",
    "remove_stale_temporaries",
    "capture_rng",
    "restore_rng",
]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")
_TEMPORARY = re.compile(r"^\..+\.tmp-\d+$")  # snapshot.atomic_path's names


def capture_rng() -> dict:
    """Global RNG states as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state = {
        "python": [list(internal), version, python_gauss],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
            "kind": kind,
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    internal, version, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class DiskFull(UserError):
    """A checkpoint or snapshot that does not fit on the disk (earlier files are left intact)."""


def state_nbytes(state) -> int:
    """Bytes of the tensors in a nested checkpoint state: about the size of its file."""
    if isinstance(state, torch.Tensor):
        return state.untyped_storage().nbytes()
    if isinstance(state, dict):
        return sum(state_nbytes(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return sum(state_nbytes(v) for v in state)
    return 0


def disk_full_error(path: Path, needed: int) -> DiskFull:
    free = shutil.disk_usage(path.parent).free
    return DiskFull(
        f"{path}: no space left on device (about {needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB "
        "free); earlier checkpoints are intact: free some space and rerun the same command"
    )


def is_disk_full(error: BaseException | None) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


class _RecordingFile:
    """A binary file for ``torch.save`` that keeps the ``OSError`` torch turns into a ``RuntimeError``."""

    def __init__(self, f, iteration: int) -> None:
        self._f, self.iteration = f, iteration
        self.error: OSError | None = None
        self.written = 0

    def write(self, data) -> int:
        try:
            n = self._f.write(data)
        except OSError as e:
            self.error = e
            raise
        self.written += n
        if self.written == n:  # the first chunk: the temporary exists and is partial
            fault_hook("write", self.iteration)
        return n

    def flush(self) -> None:
        self._f.flush()


def fault_hook(stage: str, iteration: int) -> None:
    """Fault-injection point for the tests: ``TGANV2_TEST_PAUSE_AT=ITERATION:STAGE`` makes the process
    write the file named by ``TGANV2_TEST_PAUSE_FILE`` and sleep there (the test then kills it, -9)."""
    if os.environ.get("TGANV2_TEST_PAUSE_AT") != f"{iteration}:{stage}":
        return
    marker = Path(os.environ["TGANV2_TEST_PAUSE_FILE"])
    marker.with_name(marker.name + ".tmp").write_text(f"{os.getpid()}\n")
    os.replace(marker.with_name(marker.name + ".tmp"), marker)  # the test never reads a half-written file
    time.sleep(600)


def save_checkpoint(directory: Path, iteration: int, state: dict, keep: int) -> Path:
    """Write ``directory/ckpt-{iteration:07d}.pt`` atomically, then drop all but the newest ``keep``.

    The data is written to a temporary sibling, fsynced, then renamed, so a crash at any point leaves
    either the old set of checkpoints or the new one. A full disk raises ``DiskFull`` (one line naming the
    file and the bytes needed) and removes the temporary.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{iteration:07d}.pt"
    tmp = atomic_path(path)
    recorder = None
    try:
        with open(tmp, "wb") as f:
            recorder = _RecordingFile(f, iteration)
            torch.save(state, recorder)
            f.flush()
            fault_hook("fsync", iteration)
            os.fsync(f.fileno())  # make the data durable before the rename publishes it
        fault_hook("replace", iteration)
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if is_disk_full(e) or is_disk_full(recorder.error if recorder else None):
            raise disk_full_error(path, state_nbytes(state)) from None
        if recorder is not None and recorder.error is not None:
            raise recorder.error from None  # e.g. a read-only disk: the real OSError, not torch's
        raise
    fault_hook("prune", iteration)
    for old in _checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Delete the ``.NAME.tmp-PID`` files a killed save left in ``directory`` (hold the run lock)."""
    if not directory.is_dir():
        return []
    stale = [p for p in directory.iterdir() if _TEMPORARY.match(p.name)]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def _numbered_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """``(iteration, path)`` of every checkpoint in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    return sorted((int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name)))


def _checkpoints(directory: Path) -> list[Path]:
    return [p for _, p in _numbered_checkpoints(directory)]


def latest_checkpoint(directory: Path) -> Path | None:
    found = _checkpoints(directory)
    return found[-1] if found else None


def checkpoint_iteration(directory: Path) -> int:
    """The iteration of the newest checkpoint in ``directory`` (where a rerun resumes); 0 if there is none."""
    found = _numbered_checkpoints(directory)
    return found[-1][0] if found else 0


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file is a user-facing error, not a crash
        reason = (str(e).strip().splitlines() or ["empty or truncated file"])[0]
        raise UserError(f"{path}: cannot read checkpoint ({type(e).__name__}: {reason})") from None
    if not isinstance(state, dict) or "trainer" not in state:
        raise UserError(f"{path}: not a tganv2 training checkpoint (no 'trainer' state)")
    return state


def load_latest_checkpoint(directory: Path, map_location: str | torch.device = "cpu"):
    """The newest checkpoint in ``directory`` that loads: ``(path, state, damaged)``.

    ``damaged`` lists ``(path, reason)`` for the newer files that did not load (truncated, 0-byte, ...).
    ``(None, None, [])`` when there is no checkpoint; a ``UserError`` when there are some and none loads.
    """
    damaged: list[tuple[Path, str]] = []
    for path in reversed(_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location), damaged
        except UserError as e:
            damaged.append((path, str(e)))
    if damaged:
        names = ", ".join(p.name for p, _ in damaged)
        raise UserError(
            f"{directory}: no checkpoint loads ({names} are damaged; first: {damaged[0][1]}); "
            "move them away to start the run over"
        )
    return None, None, damaged
