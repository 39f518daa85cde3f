"""Memory layouts for CUDA training: channels-last convolution weights.

cuDNN's fast bf16/TF32 convolutions work on channels-last data (NHWC, NDHWC). A convolution whose weight
is channels-last makes PyTorch choose the channels-last kernel and output, and the layers after it keep
that layout, so converting the weights once is enough: the activations follow without an explicit
conversion of the inputs. D's ``Conv3d`` weights become ``channels_last_3d``; G's ``Conv2d`` weights
(blocks, renderers, ConvLSTM) ``channels_last``. Values are unchanged; only strides differ. Gradients and
Adam's moments take the parameter's layout; ``state_dict`` tensors keep it (snapshots are made contiguous
before safetensors writes them). ``match_state_layouts`` (a load hook of the Trainer's optimisers) gives
resumed moments their parameter's layout, as the fused Adams need.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["to_channels_last", "match_state_layouts"]


def to_channels_last(module: nn.Module, enabled: bool) -> nn.Module:
    """Every Conv3d weight to ``channels_last_3d`` and Conv2d weight to ``channels_last``, in place.

    ``enabled=False`` returns the module untouched (the Trainer passes ``device.type == "cuda"``: on the
    CPU, oneDNN's Conv3d backward is faster channels-last, but the layout copies it adds around D's
    weight gradients, pooling and G's upsampling take it back: a ``demo-64`` step measured the same either
    way, docs/benchmarks.md §4). The parameter objects are kept, so optimisers and
    gradient hooks made before or after still refer to them.
    """
    if not enabled:
        return module
    for layer in module.modules():
        if isinstance(layer, nn.Conv3d):
            layout = torch.channels_last_3d
        elif isinstance(layer, nn.Conv2d):
            layout = torch.channels_last
        else:
            continue
        with torch.no_grad():
            layer.weight.data = layer.weight.data.contiguous(memory_format=layout)
    return module


def match_state_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor of ``optimizer`` its parameter's strides, in place.

    The CPU's fused Adam updates a parameter, its gradient and its moments as flat arrays, element by
    element in memory order (CUDA's refuses tensors whose layouts differ). A checkpoint written where the
    weights are contiguous (a CPU run) and resumed where they are channels-last (CUDA), or the other way
    round, would otherwise pair each weight with another weight's moments. Values are unchanged; only
    strides may differ.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                    state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
