"""Read generators trained with the official Chainer code (reference.md Appendix A, §1).

A snapshot ``generator_iter_N.npz`` holds one array per link parameter, keyed by the link path. Our
``Generator`` maps onto it one to one:

    fc.{weight,bias}                      ↔ fc/{W,b}                       (out, in) in both
    clstm.{k}.w_x.{weight,bias}           ↔ decoder{k}/w_xifoc/{W,b}       gates i, f, o, g in both
    clstm.{k}.w_h.weight                  ↔ decoder{k}/w_hifoc/W
    blocks.{i}.{bn1,bn2}.*                ↔ block{i+1}/{b1,b2}/*           BN: see _BN_FIELDS
    blocks.{i}.{conv1,conv2,shortcut}.*   ↔ block{i+1}/{c1,c2,c_sc}/{W,b}
    renderers.{l}.bn.*, .conv.*           ↔ b{l+3}/*, c{l+3}/{W,b}

BatchNorm: weight↔gamma, bias↔beta, running_mean↔avg_mean, running_var↔avg_var (both unbiased), and
num_batches_tracked↔N (a scalar update count; it has no effect in eval mode). Every npz key must be used
and every parameter found, with the expected shape; anything else is a one-line ``WeightsError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import Config, build_generator
from ..errors import UserError, WeightsError
from ..metrics.c3d import read_npz
from ..metrics.record import sha256_file
from ..snapshot import save_generator

__all__ = [
    "chainer_generator_key",
    "chainer_generator_keys",
    "load_chainer_generator",
    "convert_chainer_generator",
]

_BN_FIELDS = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "avg_mean",
    "running_var": "avg_var",
    "num_batches_tracked": "N",
}
_PARAM_FIELDS = {"weight": "W", "bias": "b"}
_BLOCK_LINKS = {"bn1": "b1", "bn2": "b2", "conv1": "c1", "conv2": "c2", "shortcut": "c_sc"}


def chainer_generator_key(torch_name: str) -> str:
    """The Chainer npz key of one generator state-dict entry, e.g. ``blocks.0.bn1.running_var`` →
    ``block1/b1/avg_var``. Names without an official counterpart raise ``UserError``."""
    patterns: list[tuple[str, Callable[[re.Match], str]]] = [
        (r"fc\.(weight|bias)", lambda m: f"fc/{_PARAM_FIELDS[m[1]]}"),
        (r"clstm\.(\d+)\.w_x\.(weight|bias)", lambda m: f"decoder{m[1]}/w_xifoc/{_PARAM_FIELDS[m[2]]}"),
        (r"clstm\.(\d+)\.w_h\.weight", lambda m: f"decoder{m[1]}/w_hifoc/W"),
        (
            r"blocks\.(\d+)\.(bn1|bn2)\.(\w+)",
            lambda m: f"block{int(m[1]) + 1}/{_BLOCK_LINKS[m[2]]}/{_BN_FIELDS[m[3]]}",
        ),
        (
            r"blocks\.(\d+)\.(conv1|conv2|shortcut)\.(weight|bias)",
            lambda m: f"block{int(m[1]) + 1}/{_BLOCK_LINKS[m[2]]}/{_PARAM_FIELDS[m[3]]}",
        ),
        (r"renderers\.(\d+)\.bn\.(\w+)", lambda m: f"b{int(m[1]) + 3}/{_BN_FIELDS[m[2]]}"),
        (r"renderers\.(\d+)\.conv\.(weight|bias)", lambda m: f"c{int(m[1]) + 3}/{_PARAM_FIELDS[m[2]]}"),
    ]
    for pattern, to_key in patterns:
        match = re.fullmatch(pattern, torch_name)
        if match:
            try:
                return to_key(match)
            except KeyError:
                break
    raise UserError(f"generator tensor '{torch_name}' has no counterpart in the official Chainer layout")


def chainer_generator_keys(generator: nn.Module) -> dict[str, str]:
    """``{state-dict name: Chainer key}`` for every tensor of ``generator`` (BN counters included)."""
    if getattr(generator, "n_classes", 0):
        raise UserError("class-conditional generators (model.n_classes > 0) have no official Chainer layout")
    return {name: chainer_generator_key(name) for name in generator.state_dict()}


def _common_prefix_hint(arrays: dict[str, np.ndarray]) -> str:
    nested = [key[: -len("fc/W")] for key in arrays if key.endswith("/fc/W")]
    return f" (the file looks like a trainer snapshot: try --prefix '{nested[0]}')" if nested else ""


def load_chainer_generator(path: str | Path, cfg: Config, prefix: str = "") -> nn.Module:
    """Build the generator of ``cfg`` and fill it from the official ``.npz``; returns it in eval mode.

    ``prefix`` selects the generator inside a larger npz (e.g. ``updater/model:gen/``); only keys under it
    are considered, and all of them must be used.
    """
    path = Path(path)
    arrays = read_npz(path, "Chainer generator snapshot")
    if prefix:
        arrays = {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}
        if not arrays:
            raise WeightsError(f"{path.name}: no keys start with the prefix '{prefix}'")
    generator = build_generator(cfg)
    key_map = chainer_generator_keys(generator)
    state = generator.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for name, key in key_map.items():
        expected = tuple(state[name].shape)
        if name.endswith("num_batches_tracked"):
            count = arrays.get(key)
            if count is not None and count.size != 1:
                raise WeightsError(f"{path.name}: key '{prefix}{key}' has shape {count.shape}, expected ()")
            new_state[name] = torch.tensor(int(count) if count is not None else 0, dtype=torch.long)
            continue
        if key not in arrays:
            hint = _common_prefix_hint(arrays) if key == "fc/W" else ""
            raise WeightsError(f"{path.name}: missing key '{prefix}{key}', expected shape {expected}{hint}")
        value = arrays[key]
        if tuple(value.shape) != expected:
            raise WeightsError(
                f"{path.name}: key '{prefix}{key}' has shape {tuple(value.shape)}, expected {expected} "
                f"(check the preset and overrides: t_size, ch, clstm_ch, n_layers, z_dim)"
            )
        new_state[name] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    leftover = sorted(set(arrays) - set(key_map.values()))
    if leftover:
        raise WeightsError(
            f"{path.name}: {len(leftover)} unused key(s), first '{prefix}{leftover[0]}' with shape "
            f"{tuple(arrays[leftover[0]].shape)} (check n_layers and the number of levels)"
        )
    generator.load_state_dict(new_state, strict=True)
    return generator.eval()


def convert_chainer_generator(
    npz_path: str | Path, out_path: str | Path, cfg: Config, prefix: str = ""
) -> Path:
    """Import an official snapshot and write it with ``tganv2.snapshot.save_generator``."""
    generator = load_chainer_generator(npz_path, cfg, prefix=prefix)
    return save_generator(
        out_path,
        generator,
        cfg,
        source="chainer",
        source_file=Path(npz_path).name,
        source_sha256=sha256_file(npz_path),
    )
