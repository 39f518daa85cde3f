"""A small seeded 3D-CNN classifier of the built-in synthetic dataset: a download-free stand-in for C3D.

The paper's scores (reference.md §5) need the C3D weights and UCF101. For the demo, the tests and the
training loop's periodic score, this classifier plays C3D's part on the synthetic dataset (9 classes,
shape × motion): its logits give a classifier-IS and its penultimate features (global max pool, after
ReLU) a classifier-FID, through the same ``features(videos) -> (features, logits)`` interface and the same
IS/FID/statistics code as C3D.

Architecture (input in [−1, 1], resampled to (frames, size, size), then box-averaged to ``work_size``):
2 × [Conv3d (1,3,3) stride (1,2,2) → BatchNorm3d → ReLU] (per-frame shape cues), 2 × [Conv3d 3³ stride 2
→ BatchNorm3d → ReLU] (motion), widths w, 2w, 4w, 4w → max over (T, H, W) → features (4w) → Linear →
logits. Max pooling keeps the small moving object's response from being averaged away by the background.
Trained with Adam + one-cycle LR on clips rendered once from ``SyntheticVideoDataset``, with random
horizontal flips and time reversal (both keep the class).
Saved as safetensors with its config and training record in the metadata.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..data.base import to_float
from ..data.synthetic import SyntheticVideoDataset
from ..errors import WeightsError
from .evaluate import progress_bar
from .record import sha256_file

__all__ = ["VideoClassifier", "train_classifier", "save_classifier", "load_classifier", "render_clips"]

FORMAT = "tganv2-classifier-v1"


def _conv_block(
    in_channels: int, out_channels: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]
) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel, stride, padding, bias=False),
        nn.BatchNorm3d(out_channels),
        nn.ReLU(inplace=True),
    )


class VideoClassifier(nn.Module):
    """3D-CNN video classifier; ``features(videos) -> (penultimate features, logits)`` like ``C3D``."""

    name = "classifier"

    def __init__(
        self,
        n_classes: int = 9,  # output classes (the synthetic dataset has 9)
        size: int = 64,  # expected input resolution; other sizes are resampled to it
        frames: int = 16,  # expected clip length; other lengths are resampled to it
        width: int = 16,  # channels of the first conv (then 2w, 4w, 4w)
        work_size: int = 32,  # inputs larger than this are box-averaged down to it first (speed)
        class_names: list[str] | None = None,  # names of the classes, for the record
    ) -> None:
        super().__init__()
        self.n_classes, self.size, self.frames, self.width = n_classes, size, frames, width
        self.work_size = min(work_size, size)
        self.class_names = list(class_names or [str(i) for i in range(n_classes)])
        self.body = nn.Sequential(
            _conv_block(3, width, (1, 3, 3), (1, 2, 2)),  # per-frame: shape cues
            _conv_block(width, 2 * width, (1, 3, 3), (1, 2, 2)),
            _conv_block(2 * width, 4 * width, (3, 3, 3), (2, 2, 2)),  # space-time: motion
            _conv_block(4 * width, 4 * width, (3, 3, 3), (2, 2, 2)),
        )
        self.head = nn.Linear(4 * width, n_classes)
        self.feature_dim = 4 * width
        self.weights_sha256: dict[str, str] = {}
        self.training_info: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes,
            "size": self.size,
            "frames": self.frames,
            "width": self.width,
            "work_size": self.work_size,
            "class_names": self.class_names,
        }

    def prepare(self, videos: Tensor) -> Tensor:
        """Videos ``(N, 3, T, H, W)`` in [−1, 1] → ``(N, 3, frames, work_size, work_size)``."""
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError(f"videos must be (N, 3, T, H, W), got {tuple(videos.shape)}")
        x = videos.float()
        if tuple(x.shape[2:]) != (self.frames, self.size, self.size):
            x = F.interpolate(
                x, size=(self.frames, self.size, self.size), mode="trilinear", align_corners=False
            )
        if self.work_size < self.size:
            x = F.adaptive_avg_pool3d(x, (self.frames, self.work_size, self.work_size))  # box filter
        return x

    def classify(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Prepared clips → (features ``(N, 4w)``, logits ``(N, n_classes)``)."""
        features = self.body(x).amax(dim=(2, 3, 4))  # (N, 4w): max over (T, H, W), small objects survive
        return features, self.head(features)

    def forward(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """Videos ``(N, 3, T, H, W)`` in [−1, 1] → (features ``(N, 4w)``, logits ``(N, n_classes)``)."""
        return self.classify(self.prepare(videos))

    @torch.no_grad()
    def features(self, videos: Tensor) -> tuple[Tensor, Tensor]:
        """Eval-mode ``forward`` on the classifier's device (the shared feature-extractor interface)."""
        was_training = self.training
        self.eval()
        try:
            return self(videos.to(self.head.weight.device))
        finally:
            self.train(was_training)


def render_clips(dataset: Any, indices: range | None = None) -> tuple[Tensor, Tensor]:
    """Items ``indices`` (default: all) of a dataset as one uint8 tensor ``(n, C, T, H, W)`` and labels."""
    items = [dataset[i] for i in (range(len(dataset)) if indices is None else indices)]
    return torch.stack([clip for clip, _ in items]), torch.tensor([label for _, label in items])


def _augment(x: Tensor, rng: torch.Generator) -> Tensor:
    """Per-sample horizontal flip and time reversal of ``(B, C, T, H, W)``; both keep the synthetic class."""
    flip = (torch.rand(len(x), generator=rng) < 0.5).view(-1, 1, 1, 1, 1)
    reverse = (torch.rand(len(x), generator=rng) < 0.5).view(-1, 1, 1, 1, 1)
    x = torch.where(flip, x.flip(-1), x)
    return torch.where(reverse, x.flip(2), x)


@torch.no_grad()
def accuracy(model: VideoClassifier, clips: Tensor, labels: Tensor, batch: int = 64) -> float:
    correct = 0
    for start in range(0, len(clips), batch):
        _, logits = model.features(to_float(clips[start : start + batch]))
        correct += int((logits.argmax(1).cpu() == labels[start : start + batch]).sum())
    return correct / len(clips)


def train_classifier(
    size: int = 64,  # resolution of the synthetic clips (and the classifier's input)
    frames: int = 16,  # clip length
    steps: int = 600,  # Adam steps
    batch: int = 32,  # clips per step
    seed: int = 0,  # seeds the data, the initialisation and the batch order
    width: int = 16,  # first-layer channels
    n_train: int = 3600,  # training clips (rendered once)
    n_val: int = 450,  # held-out clips from the dataset's disjoint test stream
    lr: float = 5e-3,  # peak one-cycle learning rate
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> VideoClassifier:
    """Train the classifier on ``SyntheticVideoDataset``; ``model.training_info`` records the run."""
    start_time = time.time()
    train_set = SyntheticVideoDataset(n_train, frames, size, seed=seed, train=True)
    val_set = SyntheticVideoDataset(n_val, frames, size, seed=seed, train=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = VideoClassifier(train_set.n_classes, size, frames, width, class_names=train_set.class_names)
    clips, labels = [], []  # rendered once, in chunks, already at the working resolution
    for start in range(0, n_train, 256):
        chunk, chunk_labels = render_clips(train_set, range(start, min(start + 256, n_train)))
        clips.append(model.prepare(to_float(chunk)))  # (B, 3, frames, work, work)
        labels.append(chunk_labels)
    clips, labels = torch.cat(clips), torch.cat(labels)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.15)
    rng = torch.Generator().manual_seed(seed)
    loss = torch.zeros(())
    with progress_bar(steps, "train classifier", progress) as advance:
        for _ in range(steps):
            index = torch.randint(len(clips), (batch,), generator=rng)
            x = _augment(clips[index], rng).to(device)  # (B, 3, frames, work, work)
            _, logits = model.classify(x)
            loss = F.cross_entropy(logits, labels[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            advance(1)
    model.eval()
    val_clips, val_labels = render_clips(val_set)
    model.training_info = {
        "dataset": "synthetic",
        "seed": seed,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "n_train": n_train,
        "n_val": n_val,
        "final_loss": float(loss.detach()),
        "val_accuracy": accuracy(model, val_clips, val_labels),
        "seconds": round(time.time() - start_time, 1),
    }
    return model


def save_classifier(path: str | Path, model: VideoClassifier) -> Path:
    """safetensors weights (BN statistics included) with the config and training record as metadata."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": FORMAT,
        "config": json.dumps(model.config()),
        "training": json.dumps(model.training_info),
    }
    save_file(state, str(path), metadata=metadata)
    return path


def load_classifier(path: str | Path, device: str | torch.device = "cpu") -> VideoClassifier:
    """A ``VideoClassifier`` in eval mode from ``save_classifier``'s file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"{path}: classifier file not found (make one with `tganv2 evaluate train-classifier`)"
        )
    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise WeightsError(f"{path}: not a safetensors file ({e})") from None
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise WeightsError(f"{path}: not a tganv2 classifier (expected metadata format '{FORMAT}')")
    config = json.loads(metadata["config"])
    model = VideoClassifier(**config)
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state or state[key].shape != value.shape:
            got = tuple(state[key].shape) if key in state else "missing"
            raise WeightsError(f"{path}: tensor '{key}' is {got}, expected shape {tuple(value.shape)}")
    model.load_state_dict(state, strict=True)
    model.training_info = json.loads(metadata.get("training", "{}"))
    model.weights_sha256 = {"classifier": sha256_file(path)}
    return model.to(device).eval()
