"""Chainer's initialisers, as the official code uses them (reference.md §8 item 10).

* LeCunNormal: N(0, 1/fan_in) — Chainer's default for Linear/Convolution (fc, CLSTM, render convs).
* GlorotUniform(scale): U(±scale·√(6/(fan_in+fan_out))) = ``xavier_uniform_(gain=scale)``.
All biases start at zero.
"""

from __future__ import annotations

import math

from torch import nn


def _zero_bias(module: nn.Module) -> None:
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


def lecun_normal_(module: nn.Module) -> nn.Module:
    fan_in = module.weight[0].numel()
    nn.init.normal_(module.weight, 0.0, 1.0 / math.sqrt(fan_in))
    _zero_bias(module)
    return module


def glorot_uniform_(module: nn.Module, scale: float = 1.0) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain=scale)
    _zero_bias(module)
    return module
