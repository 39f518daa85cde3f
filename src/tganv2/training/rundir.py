"""The run directory's record of what a run is, so that a rerun resumes the same run or says why not.

    OUT/config.yaml     the full effective config, with ``data.path`` resolved to an absolute path
    OUT/dataset.json    a cheap fingerprint of the data: its kind and length, the number and total size
                        of its files and a hash of their names, sizes and mtimes (the synthetic dataset:
                        kind and length; its other parameters are in the config)

A rerun without ``--data`` uses the recorded data. A rerun whose data or maths-changing settings differ
from the record is refused with one line naming each field old → new, unless ``--accept-changes`` is
given, which records the change in ``log.jsonl``. The settings that may change freely are listed in
``RESUME_FREE``; every other field (all of ``model.*``, lr, betas, batch, seed, precision, R1, n_dis,
...) changes the maths. A field added later is maths-changing until it is listed here.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, config_from_dict, config_to_dict
from ..errors import UserError
from ..snapshot import atomic_path

__all__ = [
    "RESUME_FREE",
    "RunRecord",
    "read_record",
    "resolve_data_path",
    "dataset_fingerprint",
    "resume_changes",
    "refuse_changes",
    "write_record",
    "truncate_log",
    "append_log",
]

# Settings that do not change what the run computes: the length of the run (--iterations extends it;
# the linear lr decay is re-planned to the new end), how often it writes and scores, and how it executes.
RESUME_FREE = frozenset(
    {
        "preset",  # a name; the fields it sets are compared one by one
        "train.iterations",
        "train.checkpoint_every",
        "train.keep_checkpoints",
        "train.sample_every",
        "train.log_every",
        "train.eval_every",
        "train.classifier",
        "train.eval_samples",
        "train.eval_real",
        "train.compile",  # the same maths, fused (float rounding may differ, as on another device)
        "data.num_workers",  # batches are keyed by (index, epoch): the same data with any worker count
    }
)

CONFIG_NAME = "config.yaml"
DATASET_NAME = "dataset.json"


class RunRecord:
    """What ``OUT`` says about its run: the config dict and the dataset fingerprint (or None)."""

    def __init__(self, config: dict[str, Any], dataset: dict[str, Any] | None) -> None:
        self.config, self.dataset = config, dataset


def read_record(out: Path) -> RunRecord | None:
    """The recorded run of ``out``, None for a new run directory; a corrupt record is a one-line error."""
    path = out / CONFIG_NAME
    if not path.is_file():
        return None
    hint = "fix it or move it away (each checkpoint keeps its own copy of the config)"
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML ({(str(e).splitlines() or ['?'])[0]}); {hint}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config sections, got {type(data).__name__}; {hint}")
    try:
        config = config_to_dict(config_from_dict(data))
    except UserError as e:
        raise UserError(f"{path}: {e}; {hint}") from None
    dataset = None
    dataset_path = out / DATASET_NAME
    if dataset_path.is_file():
        try:
            dataset = json.loads(dataset_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{dataset_path}: not valid JSON; fix it or move it away") from None
    return RunRecord(config, dataset)


def resolve_data_path(data: str | None, cfg: Config, record: RunRecord | None) -> str | None:
    """``--data``, else ``data.path``, else the recorded data; an absolute path, or None for synthetic."""
    given = data if data is not None else cfg.data.path
    if given is None and record is not None:
        given = record.config["data"]["path"]
    if given is None or str(given) == "synthetic":
        return None
    return str(Path(given).expanduser().resolve())


def _file_stamp(paths: list[Path]) -> dict[str, Any]:
    """Total size, and a hash of every file's name, size and mtime (any change to any file shows)."""
    digest = hashlib.sha256()
    total = 0
    for path in sorted(paths):
        st = path.stat()
        total += st.st_size
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files": len(paths), "bytes": total, "stamp": digest.hexdigest()[:16]}


def dataset_fingerprint(dataset, path: str | None) -> dict[str, Any]:
    """Kind and length of ``dataset``, plus the total size and newest mtime of the files it reads."""
    fingerprint: dict[str, Any] = {"kind": type(dataset).__name__, "length": len(dataset)}
    if path is None:
        return fingerprint
    if getattr(dataset, "h5_path", None) is not None:  # an HDF5 file (its index .json beside it)
        files = [Path(dataset.h5_path), *[p for p in [getattr(dataset, "json_path", None)] if p]]
    elif getattr(dataset, "paths", None) is not None:  # a folder of videos
        files = [Path(p) for p in dataset.paths]
    else:
        files = [Path(path)]
    fingerprint.update(_file_stamp([f for f in files if f.exists()]))
    return fingerprint


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, value in config.items():
        if isinstance(value, dict):
            flat.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            flat[section] = value
    return flat


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def resume_changes(record: RunRecord, cfg: Config, fingerprint: dict[str, Any]) -> dict[str, tuple]:
    """``{field: (old, new)}`` for every maths-changing setting (and data fingerprint entry) that differs."""
    old, new = _flatten(record.config), _flatten(config_to_dict(cfg))
    changes = {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if key not in RESUME_FREE and _normalise(old.get(key)) != _normalise(new.get(key))
    }
    if record.dataset is not None and "data.path" not in changes:
        for key in sorted(set(record.dataset) | set(fingerprint)):
            if record.dataset.get(key) != fingerprint.get(key):
                changes[f"data {key}"] = (record.dataset.get(key), fingerprint.get(key))
    return changes


def free_changes(record: RunRecord, cfg: Config) -> dict[str, tuple]:
    """The ``RESUME_FREE`` settings that differ (recorded in the log, never refused)."""
    old, new = _flatten(record.config), _flatten(config_to_dict(cfg))
    return {k: (old.get(k), new.get(k)) for k in sorted(RESUME_FREE) if old.get(k) != new.get(k)}


def _show(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, (list, tuple)) else str(value)


def refuse_changes(out: Path, changes: dict[str, tuple]) -> UserError:
    shown = ", ".join(f"{k} {_show(a)} → {_show(b)}" for k, (a, b) in list(changes.items())[:8])
    more = f" and {len(changes) - 8} more" if len(changes) > 8 else ""
    return UserError(
        f"{out} holds a run with other settings: {shown}{more}; rerun with the run's settings, use a new "
        f"--out for a new run, or pass --accept-changes to continue this run with the new settings "
        f"(recorded in {out / 'log.jsonl'})"
    )


def _write_atomic(path: Path, text: str) -> None:
    tmp = atomic_path(path)
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_record(out: Path, cfg: Config, fingerprint: dict[str, Any]) -> None:
    _write_atomic(out / CONFIG_NAME, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    _write_atomic(out / DATASET_NAME, json.dumps(fingerprint, indent=2) + "\n")


def truncate_log(path: Path, iteration: int) -> int:
    """Drop the records after ``iteration`` (0: all) — the resumed run writes them again. Returns the count.

    A half-written last line (a kill during a write) is dropped too.
    """
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            keep = iteration > 0 and int(record.get("iteration", 0)) <= iteration
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        _write_atomic(path, "".join(line + "\n" for line in kept))
    return dropped


def append_log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
