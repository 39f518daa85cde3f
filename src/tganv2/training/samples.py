"""Progress artefacts of a run: the JSONL log, TensorBoard, sample grids and learning statistics.

Sample grids follow the paper's Figure 4: a fixed z rendered at every level in eval mode (running BN
statistics, no subsampling), each level upscaled (nearest) to the final resolution; one row per z, one
column per level. A class-conditional generator gets one row per class (row k: class k, the first
``MAX_CLASS_ROWS`` classes). ``video_statistics`` gives numbers that show learning without a classifier:
the mean frame-to-frame change and the colour histogram of 32 generated videos (a fixed z, class-balanced
labels, final level), next to those of 32 real clips.

The loop passes the generator to draw: the trained G, or its EMA copy when ``train.ema_half_life > 0``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter

from ..config import Config
from ..data import to_float
from ..data.video import make_grid, write_video

__all__ = ["SampleWriter", "video_statistics", "render_levels", "histogram_distance"]

N_SAMPLE_ROWS = 6  # z vectors in the sample grid of an unconditional G (the first of the fixed z)
MAX_CLASS_ROWS = 16  # rows (classes) in the sample grid of a conditional G
N_STAT_VIDEOS = 32  # generated videos (and real clips) behind the learning statistics
Z_SEED = 2024  # the fixed z of every run's grids and statistics
HIST_BINS = 16


def fixed_z(generator, n: int) -> Tensor:
    """The first ``n`` of the run-independent z (``(n, z_dim)`` on G's device)."""
    return generator.make_z(n, generator=torch.Generator().manual_seed(Z_SEED))


def render_levels(
    generator,
    z: Tensor,
    y: Tensor | None = None,
    n_frames: int | None = None,
    levels: list[int] | None = None,
) -> Tensor:
    """Eval-mode videos of ``z`` (labels ``y`` for a conditional G) at ``levels`` (default: every level),
    upscaled to the last level's size.

    Returns ``(N·len(levels), C, T, H, W)``, row-major per z. G's train/eval mode is restored.
    """
    levels = levels or list(range(1, generator.n_levels + 1))
    was_training = generator.training
    generator.eval()
    with torch.no_grad():
        videos = [generator(z, y, n_frames=n_frames, render_level=level) for level in levels]
    generator.train(was_training)
    size = videos[-1].shape[-1]
    upscaled = [upsample_nearest(v, size) for v in videos]  # each (N, C, T, H, W)
    return torch.stack(upscaled, dim=1).flatten(0, 1)  # (N·L, C, T, H, W), row-major per z


def video_statistics(videos: Tensor) -> dict[str, Tensor | float]:
    """Mean |x_{t+1} − x_t| in 0–255 units and per-channel colour histograms of ``(N, C, T, H, W)``."""
    videos = videos.detach().float().clamp(-1, 1)
    motion = (videos[:, :, 1:] - videos[:, :, :-1]).abs().mean().item() * 128
    hist = torch.stack(
        [torch.histc(videos[:, c], bins=HIST_BINS, min=-1, max=1) for c in range(videos.shape[1])]
    )
    return {"motion": motion, "histogram": hist / hist.sum(dim=1, keepdim=True)}


def histogram_distance(a: Tensor, b: Tensor) -> float:
    """Mean over channels of the L1 distance between normalised histograms (0 = same, 2 = disjoint)."""
    return (a - b).abs().sum(dim=1).mean().item()


class SampleWriter:
    """Rank-0 writer of ``log.jsonl``, TensorBoard scalars and frames, and sample grids."""

    def __init__(
        self, out: Path, cfg: Config, device: torch.device, dataset, resume_iteration: int = 0
    ) -> None:
        self.out, self.cfg, self.device = Path(out), cfg, device
        self.resume_iteration = resume_iteration  # TensorBoard drops its events after this iteration
        self.log_path = self.out / "log.jsonl"
        self.real_stats = self._real_statistics(dataset)
        self._tb = None
        self._t0 = time.time()

    def _real_statistics(self, dataset) -> dict:
        n = min(len(dataset), N_STAT_VIDEOS)
        clips = torch.stack([dataset[(i, 0)][0] for i in range(n)])  # (n, C, T, H, W) uint8
        return video_statistics(to_float(clips))

    @property
    def tensorboard(self):
        if self._tb is None:
            purge = self.resume_iteration + 1 if self.resume_iteration else None
            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=purge)
        return self._tb

    def log(self, iteration: int, scalars: dict, group: str = "train", **fields: str) -> None:
        """One ``log.jsonl`` record (``fields``: non-scalar extras) and ``group/key`` TensorBoard scalars."""
        record = {"iteration": iteration, "time": round(time.time() - self._t0, 3), **fields, **scalars}
        with open(self.log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        for key, value in scalars.items():
            self.tensorboard.add_scalar(f"{group}/{key}", value, iteration)

    def write(self, generator, iteration: int, **fields: str) -> dict:
        """Write ``samples/iter_N.mp4`` and ``.gif`` (only the GIF without PyAV); log and return the stats.

        ``fields``: extras for the log record (e.g. ``weights="ema"``).
        """
        rows = min(generator.n_classes, MAX_CLASS_ROWS) if generator.n_classes else N_SAMPLE_ROWS
        row_labels = generator.make_labels(rows)  # row k: class k; None when unconditional
        grid_videos = render_levels(generator, fixed_z(generator, rows), row_labels)  # (rows·L, C, T, H, W)
        frames = make_grid(grid_videos, nrow=generator.n_levels)  # (T, H', W', 3) uint8
        stem = self.out / "samples" / f"iter_{iteration:07d}"
        written = write_video(stem.with_suffix(".mp4"), frames, fps=8)  # a .gif without PyAV
        if written.suffix != ".gif":
            write_video(stem.with_suffix(".gif"), frames, fps=8)
        self.tensorboard.add_image("samples/first_frame", frames[0], iteration, dataformats="HWC")
        self.tensorboard.add_image(
            "samples/middle_frame", frames[len(frames) // 2], iteration, dataformats="HWC"
        )
        z, y = fixed_z(generator, N_STAT_VIDEOS), generator.make_labels(N_STAT_VIDEOS)  # y class-balanced
        fake = video_statistics(render_levels(generator, z, y, levels=[generator.n_levels]))  # 32 videos
        stats = {
            "motion_fake": round(fake["motion"], 4),
            "motion_real": round(self.real_stats["motion"], 4),
            "hist_l1": round(histogram_distance(fake["histogram"], self.real_stats["histogram"]), 4),
        }
        self.log(iteration, stats, group="samples", samples=written.name, **fields)
        return stats

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def upsample_nearest(video: Tensor, size: int) -> Tensor:
    """``(N, C, T, h, w)`` → ``(N, C, T, size, size)`` by nearest neighbour."""
    n, c, t, h, w = video.shape
    return F.interpolate(video.reshape(n, c * t, h, w), size=(size, size), mode="nearest").view(
        n, c, t, size, size
    )
