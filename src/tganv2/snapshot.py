"""Generator snapshots for inference: safetensors weights with the config JSON in the metadata.

``save_generator`` writes atomically (temporary file, then rename). ``load_generator`` accepts our
snapshots (``.safetensors``, also those converted from the official Chainer ``.npz`` files) and full
training checkpoints (``.pt``, loaded with ``weights_only=True``), and returns a Generator in eval mode
with the BatchNorm running statistics restored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import Config, config_from_dict, config_to_dict
from .errors import WeightsError

__all__ = ["save_generator", "load_generator", "read_snapshot_config", "atomic_path"]

FORMAT = "tganv2-generator-v1"


def atomic_path(path: Path) -> Path:
    """A temporary sibling of ``path``; write there, then ``os.replace`` onto ``path``."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def save_generator(path: str | Path, generator: torch.nn.Module, cfg: Config, **metadata: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in generator.state_dict().items()}
    meta = {"format": FORMAT, "config": json.dumps(config_to_dict(cfg)), **metadata}
    tmp = atomic_path(path)
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a partial file nor a stray temp
        raise
    return path


def read_snapshot_config(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"generator file not found: {path}")
    if path.suffix == ".pt":
        return config_from_dict(_load_checkpoint(path)["config"])
    try:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if "config" not in meta:
        raise WeightsError(f"{path}: no tganv2 config in the safetensors metadata (expected key 'config')")
    return config_from_dict(json.loads(meta["config"]))


def _load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file for the user
        raise WeightsError(f"{path}: not a tganv2 checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "generator" not in ckpt or "config" not in ckpt:
        raise WeightsError(f"{path}: not a tganv2 checkpoint (expected keys 'generator' and 'config')")
    return ckpt


def load_generator(path: str | Path, device: str | torch.device = "cpu"):
    """A ready-to-use Generator (eval mode) from a snapshot or a full training checkpoint."""
    from .config import build_generator

    path = Path(path)
    cfg = read_snapshot_config(path)
    state = _load_checkpoint(path)["generator"] if path.suffix == ".pt" else load_file(str(path))
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
    generator.config = cfg
    return generator.to(device).eval()
