"""C3D fine-tuned on UCF101, from the official Chainer weights (reference.md §5.1, Appendix A).

Official ``tgan2/models/c3d/c3d_ucf101.py`` (``C3DVersion1UCF101``), weights ``conv3d_deepnetA_ucf.npz``
(Caffe ``c3d_ucf101_finetune_whole_iter_20000``) and ``mean2.npz``. Preprocessing is part of the model:

    x ∈ [−1, 1] RGB (N, 3, 16, H, W) → BGR → x·128 + 128 → bilinear resize (align_corners) of the whole
    frame to 112×112 (no crop) → − mean[:, :, 8:120, 8:120]

then conv1a pool1(1,2,2) conv2a pool2 conv3a,b pool3 conv4a,b pool4 conv5a,b pool5 (2³, ceil mode:
(2,7,7) → (1,4,4)), all convs 3³ pad 1 + ReLU, fc6 ReLU, fc7 ReLU (the FID features), fc8 (the IS logits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import WeightsError
from .record import sha256_file

__all__ = ["C3D", "C3D_WEIGHT_SHAPES", "c3d_preprocess", "load_c3d", "read_npz"]

INPUT_SIZE = 112  # C3D crop size
CLIP_FRAMES = 16  # C3D clip length
MEAN_CROP = slice(8, 120)  # official mean2.npz['mean'][:, :, 8:120, 8:120]

_CONVS = [
    ("conv1a", 3, 64),
    ("conv2a", 64, 128),
    ("conv3a", 128, 256),
    ("conv3b", 256, 256),
    ("conv4a", 256, 512),
    ("conv4b", 512, 512),
    ("conv5a", 512, 512),
    ("conv5b", 512, 512),
]
_FCS = [("fc6", 8192, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 101)]

# The 22 keys of conv3d_deepnetA_ucf.npz and their shapes (Chainer/PyTorch layout (out, in, kT, kH, kW)).
C3D_WEIGHT_SHAPES: dict[str, tuple[int, ...]] = {}
for _name, _cin, _cout in _CONVS:
    C3D_WEIGHT_SHAPES[f"{_name}/W"] = (_cout, _cin, 3, 3, 3)
    C3D_WEIGHT_SHAPES[f"{_name}/b"] = (_cout,)
for _name, _fin, _fout in _FCS:
    C3D_WEIGHT_SHAPES[f"{_name}/W"] = (_fout, _fin)
    C3D_WEIGHT_SHAPES[f"{_name}/b"] = (_fout,)


def read_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` (``allow_pickle=False``); a missing or unreadable file is a WeightsError."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {what} not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise WeightsError(f"{path}: not a readable {what} npz ({first_line})") from None


def _check_shape(path: Path, arrays: dict[str, np.ndarray], key: str, shape: tuple[int, ...]) -> np.ndarray:
    if key not in arrays:
        raise WeightsError(f"{path.name}: missing key '{key}', expected shape {shape}")
    value = arrays[key]
    if tuple(value.shape) != shape:
        raise WeightsError(f"{path.name}: key '{key}' has shape {tuple(value.shape)}, expected {shape}")
    if not np.issubdtype(value.dtype, np.floating):
        raise WeightsError(f"{path.name}: key '{key}' has dtype {value.dtype}, expected a float array")
    return value


def c3d_preprocess(videos: Tensor, mean: Tensor) -> Tensor:
    """``(N, 3, 16, H, W)`` RGB in [−1, 1] → ``(N, 3, 16, 112, 112)`` BGR pixels minus ``mean``.

    BGR swap and x·128 + 128 (the official fixed 1×1×1 conv), bilinear resize with align_corners of each
    whole frame to 112×112 (no crop), then minus the (3, 16, 112, 112) mean patch.
    """
    n, c, t, h, w = videos.shape
    if c != 3 or t != CLIP_FRAMES:
        raise ValueError(f"C3D expects videos (N, 3, {CLIP_FRAMES}, H, W), got {tuple(videos.shape)}")
    x = videos.float().flip(1) * 128 + 128  # RGB → BGR, pixel range
    x = x.reshape(n, c * t, h, w)  # (N, 3·16, H, W): resize every frame
    x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=True)
    x = x.reshape(n, c, t, INPUT_SIZE, INPUT_SIZE)  # (N, 3, 16, 112, 112)
    return x - mean


class C3D(nn.Module):
    """C3D v1.0 UCF101 with the official preprocessing; ``features(videos) -> (fc7, fc8)``."""

    name = "c3d"
    feature_dim = 4096  # fc7
    n_classes = 101  # fc8

    def __init__(
        self,
        mean: Tensor | None = None,  # (3, 16, 112, 112) BGR mean patch; None = zeros
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleDict({name: nn.Conv3d(cin, cout, 3, padding=1) for name, cin, cout in _CONVS})
        self.fcs = nn.ModuleDict({name: nn.Linear(fin, fout) for name, fin, fout in _FCS})
        if mean is None:
            mean = torch.zeros(3, CLIP_FRAMES, INPUT_SIZE, INPUT_SIZE)
        self.register_buffer("mean", mean.float())  # (3, 16, 112, 112), BGR
        self.weights_sha256: dict[str, str] = {}
        self.eval()

    def preprocess(self, videos: Tensor) -> Tensor:
        return c3d_preprocess(videos, self.mean)

    def trunk(self, x: Tensor) -> Tensor:
        """Preprocessed clips ``(N, 3, 16, 112, 112)`` → pool5 ``(N, 512, 1, 4, 4)``."""
        for name, _, _ in _CONVS:
            x = F.relu(self.convs[name](x))
            if name == "conv1a":
                x = F.max_pool3d(x, (1, 2, 2), (1, 2, 2))  # (N, 64, 16, 56, 56)
            elif name in ("conv2a", "conv3b", "conv4b"):
                x = F.max_pool3d(x, 2, 2)
            elif name == "conv5b":
                x = F.max_pool3d(x, 2, 2, ceil_mode=True)  # Chainer cover_all: (2, 7, 7) → (1, 4, 4)
        return x

    def forward(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """Videos ``(N, 3, 16, H, W)`` in [−1, 1] → (fc7 after ReLU ``(N, 4096)``, fc8 ``(N, 101)``)."""
        return self.head(self.trunk(self.preprocess(videos)))

    def head(self, pool5: Tensor) -> tuple[Tensor, Tensor]:
        """pool5 ``(N, 512, 1, 4, 4)`` → fc6 → ReLU → fc7 → ReLU (features) → fc8 (logits)."""
        x = pool5.flatten(1)  # (N, 8192), C-order over (C, T, H, W) like Chainer's reshape
        x = F.relu(self.fcs["fc6"](x))
        features = F.relu(self.fcs["fc7"](x))
        return features, self.fcs["fc8"](features)

    @torch.no_grad()
    def features(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """The feature-extractor interface shared with the classifier: (penultimate features, logits)."""
        return self(videos.to(self.mean.device))

    @classmethod
    def from_npz(cls, weights_path: str | Path, mean_path: str | Path) -> C3D:
        """Load ``conv3d_deepnetA_ucf.npz`` (22 keys) and ``mean2.npz`` (``mean``: (3, 16, ≥120, ≥120))."""
        weights_path, mean_path = Path(weights_path), Path(mean_path)
        mean_arrays = read_npz(mean_path, "C3D mean file")
        if "mean" not in mean_arrays:
            raise WeightsError(
                f"{mean_path.name}: missing key 'mean', expected shape (3, 16, H>=120, W>=120)"
            )
        mean = mean_arrays["mean"]
        if mean.ndim != 4 or mean.shape[:2] != (3, CLIP_FRAMES) or min(mean.shape[2:]) < 120:
            raise WeightsError(
                f"{mean_path.name}: key 'mean' has shape {tuple(mean.shape)}, "
                f"expected (3, 16, H>=120, W>=120)"
            )
        arrays = read_npz(weights_path, "C3D weights file")
        unexpected = sorted(set(arrays) - set(C3D_WEIGHT_SHAPES))
        if unexpected:
            raise WeightsError(
                f"{weights_path.name}: unexpected key '{unexpected[0]}' (a C3D file has the 22 keys "
                f"conv1a/W … fc8/b)"
            )
        checked = {
            key: _check_shape(weights_path, arrays, key, shape) for key, shape in C3D_WEIGHT_SHAPES.items()
        }
        model = cls(
            torch.from_numpy(np.ascontiguousarray(mean[:, :, MEAN_CROP, MEAN_CROP], dtype=np.float32))
        )
        with torch.no_grad():
            for name, module in [*model.convs.items(), *model.fcs.items()]:
                module.weight.copy_(torch.from_numpy(np.asarray(checked[f"{name}/W"], dtype=np.float32)))
                module.bias.copy_(torch.from_numpy(np.asarray(checked[f"{name}/b"], dtype=np.float32)))
        model.weights_sha256 = {"c3d": sha256_file(weights_path), "c3d_mean": sha256_file(mean_path)}
        return model


def load_c3d(weights_path: str | Path, mean_path: str | Path, device: str | torch.device = "cpu") -> C3D:
    """``C3D.from_npz`` on ``device``, in eval mode."""
    return C3D.from_npz(weights_path, mean_path).to(device).eval()
