"""Generator snapshots for inference: safetensors weights with the config JSON in the metadata.

``save_generator`` writes atomically (temporary file, then rename). ``load_snapshot`` accepts our
snapshots (``.safetensors``, also those converted from the official Chainer ``.npz`` files) and full
training checkpoints (``.pt``, loaded with ``weights_only=True``), and returns a ``LoadedGenerator``: the
Generator in eval mode with the BatchNorm running statistics restored, its ``Config``, which weights it
holds and the snapshot's metadata. ``load_generator`` is its ``.model``.

Which weights. A run with ``train.ema_half_life > 0`` keeps an EMA copy of G (``training/ema.py``). Its
checkpoints hold both, the trained G under ``generator`` and the copy under ``generator_ema``; its snapshot
holds one, the EMA copy, and says so in the metadata (``weights``: ``raw`` or ``ema``; a snapshot
without the key holds raw weights). ``weights=None`` picks the EMA copy where there is one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .config import Config, build_generator, config_from_dict, config_to_dict
from .errors import UserError, WeightsError

__all__ = [
    "LoadedGenerator",
    "save_generator",
    "load_snapshot",
    "load_generator",
    "read_snapshot_config",
    "snapshot_weights",
    "atomic_path",
    "WEIGHTS",
]

FORMAT = "tganv2-generator-v1"
WEIGHTS = ("raw", "ema")  # the trained G, or its EMA copy
CHECKPOINT_KEYS = {"raw": "generator", "ema": "generator_ema"}  # where a training checkpoint holds each


@dataclass(frozen=True)
class LoadedGenerator:
    """A generator read from disk, with the config it was built from."""

    model: torch.nn.Module  # tganv2.nn.generator.Generator, eval mode
    config: Config
    weights: str  # "raw" or "ema"
    metadata: dict[str, str] = field(default_factory=dict)  # the snapshot's metadata (iteration, source, ...)


def atomic_path(path: Path) -> Path:
    """A temporary sibling of ``path``; write there, then ``os.replace`` onto ``path``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_generator(
    path: str | Path, generator: torch.nn.Module, cfg: Config, weights: str = "raw", **metadata: str
) -> Path:
    """Write ``generator`` (its ``weights`` copy: raw or ema) with ``cfg`` and ``metadata`` to ``path``."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}, got {weights!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(config_to_dict(cfg)), "weights": weights, **metadata}
    tmp = atomic_path(path)
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a partial file nor a stray temp
        raise
    return path


def _read_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if "config" not in meta:
        raise WeightsError(f"{path}: no tganv2 config in the safetensors metadata (expected key 'config')")
    return meta


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise WeightsError(f"generator file not found: {path}")


def snapshot_weights(path: str | Path) -> str:
    """Which weights a snapshot (``.safetensors``) holds: ``"raw"`` or ``"ema"``."""
    path = Path(path)
    _check_file(path)
    return _read_metadata(path).get("weights", "raw")


def read_snapshot_config(path: str | Path) -> Config:
    path = Path(path)
    _check_file(path)
    if path.suffix == ".pt":
        return config_from_dict(_load_checkpoint(path)["config"])
    return _config_from_metadata(path, _read_metadata(path)["config"])


def _config_from_metadata(path: Path, text: str) -> Config:
    """The ``config`` JSON of a snapshot's metadata; anything else is a one-line ``WeightsError``."""
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise WeightsError(f"{path}: the 'config' metadata is not valid JSON ({e.msg})") from None
    if not isinstance(config, dict):
        raise WeightsError(
            f"{path}: the 'config' metadata must be a JSON object, got {type(config).__name__}"
        )
    try:
        return config_from_dict(config)
    except WeightsError:
        raise
    except UserError as e:
        raise WeightsError(f"{path}: the 'config' metadata: {e}") from None


def _load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise WeightsError(f"{path}: not a tganv2 checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "config" not in ckpt:
        raise WeightsError(f"{path}: not a tganv2 checkpoint (expected keys 'generator' and 'config')")
    return ckpt


def _read_weights(path: Path, weights: str | None) -> tuple[dict, Config, str, dict[str, str]]:
    """(state dict, config, which weights, metadata) of a checkpoint or snapshot."""
    if weights is not None and weights not in WEIGHTS:
        raise WeightsError(f"weights must be one of {', '.join(WEIGHTS)}, got '{weights}'")
    if path.suffix == ".pt":
        ckpt = _load_checkpoint(path)
        held = "ema" if CHECKPOINT_KEYS["ema"] in ckpt else "raw"
        chosen = weights or held
        if CHECKPOINT_KEYS[chosen] not in ckpt:
            raise WeightsError(
                f"{path}: no EMA copy of the generator (the run had train.ema_half_life=0); "
                "use the raw weights"
            )
        return ckpt[CHECKPOINT_KEYS[chosen]], config_from_dict(ckpt["config"]), chosen, {}
    meta = _read_metadata(path)
    held = meta.get("weights", "raw")  # snapshots written before the EMA hold the raw weights
    if weights is not None and weights != held:
        raise WeightsError(
            f"{path}: this snapshot holds the {held} weights only; for the {weights} copy load a training "
            "checkpoint (RUN/checkpoints/ckpt-N.pt)"
        )
    return load_file(str(path)), _config_from_metadata(path, meta["config"]), held, meta


def load_snapshot(
    path: str | Path, device: str | torch.device = "cpu", weights: str | None = None
) -> LoadedGenerator:
    """The generator (eval mode) of a snapshot or a full training checkpoint, with its config.

    ``weights``: ``"raw"`` (the trained G), ``"ema"`` (its EMA copy) or None (the EMA copy when the file
    holds one). A file without the requested copy is a one-line ``WeightsError``.
    """
    path = Path(path)
    _check_file(path)
    state, cfg, chosen, meta = _read_weights(path, weights)
    generator = build_generator(cfg)
    expected = generator.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise WeightsError(f"{path}: missing tensor '{key}' (expected shape {tuple(value.shape)})")
        if state[key].shape != value.shape:
            raise WeightsError(
                f"{path}: tensor '{key}' has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    extra = sorted(set(state) - set(expected))
    if extra:
        raise WeightsError(f"{path}: unexpected tensor '{extra[0]}' ({len(extra)} unexpected in all)")
    generator.load_state_dict(state)
    return LoadedGenerator(generator.to(device).eval(), cfg, chosen, dict(meta))


def load_generator(path: str | Path, device: str | torch.device = "cpu", weights: str | None = None):
    """A ready-to-use Generator (eval mode) from a snapshot or a full training checkpoint (see
    ``load_snapshot``, which also returns its config)."""
    return load_snapshot(path, device, weights).model
