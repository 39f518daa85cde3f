"""The one device rule of every command: ``--device auto`` (the default) is CUDA when present, else CPU."""

from __future__ import annotations

import torch

from .errors import UserError

__all__ = ["DEVICE_HELP", "resolve_device"]

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None → ``cuda`` if available else ``cpu``; anything unusable → a one-line ``UserError``."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name}: unknown device (expected {DEVICE_HELP})") from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise UserError(f"--device {name}: not supported (expected {DEVICE_HELP})")
    if torch.version.cuda is None:
        raise UserError(f"--device {name}: this torch build has no CUDA support; use --device cpu or auto")
    count = torch.cuda.device_count()
    if count == 0:
        raise UserError(f"--device {name}: no CUDA device is visible; use --device cpu or auto")
    if device.index is not None and device.index >= count:
        raise UserError(f"--device {name}: only {count} CUDA device(s) visible (cuda:0..cuda:{count - 1})")
    return device
