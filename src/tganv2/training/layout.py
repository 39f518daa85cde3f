"""Memory layouts for CUDA training: channels-last convolution weights.

cuDNN's fast bf16/TF32 convolutions work on channels-last data (NHWC, NDHWC). A convolution whose weight
is channels-last makes PyTorch choose the channels-last kernel and output, and the layers after it keep
that layout, so converting the weights once is enough: the activations follow without an explicit
conversion of the inputs. D's ``Conv3d`` weights become ``channels_last_3d``; G's ``Conv2d`` weights
(blocks, renderers, ConvLSTM) ``channels_last``. Values are unchanged; only strides differ. Gradients and
Adam's moments take the parameter's layout; ``state_dict`` tensors keep it (snapshots are made contiguous
before safetensors writes them).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["to_channels_last"]


def to_channels_last(module: nn.Module, enabled: bool) -> nn.Module:
    """Every Conv3d weight to ``channels_last_3d`` and Conv2d weight to ``channels_last``, in place.

    ``enabled=False`` returns the module untouched (the Trainer passes ``device.type == "cuda"``: on the
    CPU the contiguous kernels are the fast ones). The parameter objects are kept, so optimisers and
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
