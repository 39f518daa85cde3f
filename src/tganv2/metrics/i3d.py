"""The I3D detector for FVD, as StyleGAN-V uses it (evaluation.md §3.1).

The detector is StyleGAN-V's TorchScript export of the TF-Hub I3D (Kinetics-400), ``i3d_torchscript.pt``.
It takes uint8 videos ``(N, C, T, H, W)`` and is called with ``rescale=True`` (to [−1, 1]),
``resize=True`` (to 224×224) and ``return_features=True`` (400-d pre-softmax logits). Generated videos
in [−1, 1] are mapped to uint8 exactly as StyleGAN-V does: ``(x·127.5 + 128).clamp(0, 255)`` truncated.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import Tensor

from ..errors import WeightsError
from .record import sha256_file

__all__ = ["I3D", "load_i3d", "videos_to_uint8"]

DETECTOR_KWARGS = {"rescale": True, "resize": True, "return_features": True}  # StyleGAN-V's FVD call


def videos_to_uint8(videos: Tensor) -> Tensor:
    """``(N, 3, T, H, W)`` floats in [−1, 1] → uint8, ``x·127.5 + 128`` clamped (StyleGAN-V's mapping)."""
    return (videos * 127.5 + 128).clamp(0, 255).to(torch.uint8)


class I3D:
    """A TorchScript I3D with the StyleGAN-V call convention; ``features(videos) -> (features, None)``."""

    name = "i3d"

    def __init__(
        self,
        detector: torch.jit.ScriptModule,  # the loaded TorchScript module
        device: torch.device,  # where videos are sent
        weights_sha256: str = "",  # sha256 of the .pt file, for the record
    ) -> None:
        self.detector = detector
        self.device = device
        self.weights_sha256 = {"i3d": weights_sha256} if weights_sha256 else {}

    @torch.no_grad()
    def features_uint8(self, videos: Tensor) -> Tensor:
        """uint8 videos ``(N, 3, T, H, W)`` → features ``(N, D)`` (float)."""
        if videos.dtype != torch.uint8 or videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError(
                f"I3D expects uint8 videos (N, 3, T, H, W), got {videos.dtype} {tuple(videos.shape)}"
            )
        return self.detector(videos.to(self.device), **DETECTOR_KWARGS).float()

    def features(self, videos: Tensor) -> tuple[Tensor, None]:
        """Float videos in [−1, 1] → (features, None); I3D gives no class probabilities here."""
        return self.features_uint8(videos_to_uint8(videos)), None


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> I3D:
    """Load ``i3d_torchscript.pt`` with ``torch.jit.load(path, map_location=device)``."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: I3D TorchScript file not found (StyleGAN-V's i3d_torchscript.pt)")
    device = torch.device(device)
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but it is the file's only format
            warnings.simplefilter("ignore", DeprecationWarning)
            detector = torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as e:
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a TorchScript I3D file ({first_line})") from None
    detector.eval()
    return I3D(detector, device, sha256_file(path))
