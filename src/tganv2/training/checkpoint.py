"""Full training checkpoints: written atomically, the last K kept, resumed by rerunning the same command.

A checkpoint holds G, D, both optimisers and lr schedules, the iteration, the config, and the RNG states of
python, numpy and torch (and CUDA where present), plus the training ``rng`` of every rank. It contains only
tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..snapshot import atomic_path

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "capture_rng", "restore_rng"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


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


def save_checkpoint(directory: Path, iteration: int, state: dict, keep: int) -> Path:
    """Write ``directory/ckpt-{iteration:07d}.pt`` atomically, then drop all but the newest ``keep``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{iteration:07d}.pt"
    tmp = atomic_path(path)
    torch.save(state, tmp)
    with open(tmp, "rb") as f:  # make the data durable before the rename publishes it
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in _checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def _checkpoints(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    found = _checkpoints(directory)
    return found[-1] if found else None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file is a user-facing error, not a crash
        raise UserError(
            f"{path}: cannot read checkpoint ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from None
