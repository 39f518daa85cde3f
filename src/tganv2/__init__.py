"""tganv2: TGANv2 ("Train Sparsely, Generate Densely") video GANs with multiple subsampling layers.

Public API::

    cfg = tganv2.load_preset("ucf101-192", overrides=["train.batch=16"])
    G = tganv2.build_generator(cfg)        # training mode: list of level videos (N_l, 3, T_l, H_l, W_l)
    D = tganv2.build_discriminator(cfg)    # list of level videos -> (ΣN_l, 1)
    tganv2.losses.generator_loss(D(G(G.make_z(8))))
    G = tganv2.load_generator("runs/x/generator.safetensors")  # eval mode, ready to sample
    snap = tganv2.load_snapshot("runs/x/generator.safetensors")  # .model, .config, .weights (raw | ema)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The public names, imported on first use (PEP 562): `import tganv2.cli` then loads no torch, so the
# `tganv2` command can set the OpenMP wait policy before torch starts its threads (see tganv2.cli).
_EXPORTS = {
    "Config": "config",
    "build_discriminator": "config",
    "build_generator": "config",
    "level_shapes": "config",
    "load_config": "config",
    "load_preset": "config",
    "LoadedGenerator": "snapshot",
    "load_generator": "snapshot",
    "load_snapshot": "snapshot",
    "save_generator": "snapshot",
}

__all__ = [*_EXPORTS, "losses"]


def __getattr__(name: str):
    if name == "losses":
        return importlib.import_module(".losses", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'tganv2' has no attribute {name!r}")
