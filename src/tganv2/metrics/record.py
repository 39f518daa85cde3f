"""The JSON record of an evaluation run: what was measured, how, and with which exact files.

Every ``tganv2 evaluate`` command writes one record so that a number can be traced back to its protocol
(reference.md §5: N, loops, splits, resolution, frames, render level, data split, seeds) and to the sha256
of the weights and the checkpoint it was computed with.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__

__all__ = ["sha256_file", "write_record", "base_record"]

_sha_cache: dict[tuple[str, int, float], str] = {}


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (cached per path, size and mtime within the process)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _sha_cache:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                digest.update(chunk)
        _sha_cache[key] = digest.hexdigest()
    return _sha_cache[key]


def base_record(metric: str, **fields: Any) -> dict[str, Any]:
    """The common header of a record: metric name, time, software versions, then ``fields``."""
    record: dict[str, Any] = {
        "metric": metric,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "software": {
            "tganv2": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    record.update(fields)
    return record


def _to_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


def write_record(record: dict[str, Any], path: str | Path) -> Path:
    """Write ``record`` as indented JSON to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_to_json(record), indent=2) + "\n")
    return path
