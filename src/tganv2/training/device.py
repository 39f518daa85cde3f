"""The device set-up of training, shared by ``tganv2 train`` and ``tganv2 bench step``'s child processes.

On CUDA: TF32 tensor-core matmuls and convolutions for fp32 work, and cuDNN autotuning (the shapes of a
training step repeat, so the first step's search pays off). On the CPU nothing changes.
"""

from __future__ import annotations

import torch

__all__ = ["configure_backends", "backend_settings"]


def configure_backends(device: torch.device | str) -> None:
    """Set the process-wide backend flags for training on ``device`` (call once, before the models run)."""
    device = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = device.type == "cuda"


def backend_settings() -> dict[str, bool]:
    """The flags ``configure_backends`` sets, as they are now (recorded with benchmark figures)."""
    return {
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
