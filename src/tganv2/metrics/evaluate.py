"""The evaluation protocols: loops over generated samples, real statistics, JSON records.

* IS (reference.md §5.2): N = 2048 generated 16-frame videos per loop (eval mode, ``render_level`` from the
  config, clipped to [−1, 1]), softmax of the classifier logits, splits = 1, eps 1e-20; 10 loops with fresh
  samples; mean ± population std.
* FID (§5.3): penultimate features (C3D fc7); real statistics over the training split *with* the training
  augmentation (the official 5,610 × 17 clips = 10 passes over the videos, pass p = epoch p of the
  dataset's per-item random crop, flip and start); 10 loops of 2048 generated; mean ± population std.
* FVD (evaluation.md §3.1): StyleGAN-V's I3D, 2048 real clips of 16 consecutive frames drawn uniformly over
  all videos with a recorded seed, 2048 generated, population covariance (ddof 0) as StyleGAN-V computes it.

Any object with ``features(videos) -> (features, logits | None)`` and a ``weights_sha256`` dict is a
feature extractor here: the C3D, the synthetic-data classifier and the I3D share these code paths.

A class-conditional generator is sampled class-balanced: labels 0, 1, …, K−1, 0, …
(``Generator.make_labels``), so every class is generated ⌊n/K⌋ or ⌈n/K⌉ times.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from ..data.base import to_float
from ..progress import make_progress
from .scores import frechet_distance_from_stats, inception_score, mean_and_std
from .stats import FeatureStats

if TYPE_CHECKING:  # the records name the preset and resolution of the generator's config
    from ..config import Config

__all__ = [
    "FeatureExtractor",
    "progress_bar",
    "generate_videos",
    "generated_features",
    "dataset_features",
    "evaluate_is",
    "evaluate_fid",
    "evaluate_fvd",
    "real_stats_from_dataset",
    "fvd_real_indices",
    "generator_protocol",
]


class FeatureExtractor(Protocol):
    name: str
    weights_sha256: dict[str, str]

    def features(self, videos: Tensor) -> tuple[Tensor, Tensor | None]:
        """Videos ``(N, 3, T, H, W)`` in [−1, 1] → (penultimate features ``(N, D)``, logits ``(N, K)``)."""
        ...


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable[[int], None]]:
    """A rich progress bar with ETA on stderr; yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def generate_videos(
    generator: nn.Module,
    n: int,
    batch: int,
    seed: int,
    n_frames: int = 16,
    render_level: int | None = None,
) -> Iterator[Tensor]:
    """Yield ``n`` generated videos ``(B, 3, n_frames, H, W)`` clipped to [−1, 1], in batches.

    The generator runs in eval mode (running BN statistics, no subsampling) and is put back in its previous
    mode afterwards. z comes from a CPU ``torch.Generator`` seeded with ``seed``, so the samples do not
    depend on the device or the batch size; a conditional generator gets class-balanced labels.
    """
    was_training = generator.training
    generator.eval()
    device = _device_of(generator)
    rng = torch.Generator().manual_seed(seed)
    z_all = generator.make_z(n, generator=rng, device="cpu")  # (n, z_dim), drawn at once: batch-size free
    y_all = generator.make_labels(n, device="cpu")  # (n,) 0, 1, …, K−1, 0, … or None
    try:
        for start in range(0, n, batch):
            z = z_all[start : start + batch].to(device)
            y = None if y_all is None else y_all[start : start + batch].to(device)
            videos = generator(z, y, n_frames=n_frames, render_level=render_level)
            yield videos.clamp(-1, 1)  # (B, 3, T, H, W)
    finally:
        generator.train(was_training)


def generated_features(
    generator: nn.Module,
    extractor: FeatureExtractor,
    n: int,
    batch: int,
    seed: int,
    n_frames: int = 16,
    render_level: int | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[FeatureStats, np.ndarray | None, tuple[int, ...]]:
    """Statistics of the features of ``n`` generated videos, their class probabilities ``(n, K)`` (or None)
    and the shape ``(3, T, H, W)`` of one video."""
    stats, probs, shape = FeatureStats(), [], ()
    for videos in generate_videos(generator, n, batch, seed, n_frames, render_level):
        features, logits = extractor.features(videos)
        stats.update(features)
        if logits is not None:
            probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
        shape = tuple(videos.shape[1:])
        advance(len(videos))
    return stats, (np.concatenate(probs) if probs else None), shape


def dataset_features(
    dataset: Any,
    keys: Sequence[Any],
    extractor: Callable[[Tensor], Tensor],
    batch: int,
    num_workers: int = 0,
    advance: Callable[[int], None] = lambda n: None,
) -> FeatureStats:
    """Feature statistics of ``dataset[key]`` clips (uint8 ``(C, T, H, W)``) for ``key`` in ``keys``.

    ``extractor`` maps a uint8 batch ``(B, C, T, H, W)`` to features ``(B, D)``.
    """
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch, sampler=list(keys), num_workers=num_workers, shuffle=False
    )
    stats = FeatureStats()
    for clips, _labels in loader:
        stats.update(extractor(clips))  # clips: (B, C, T, H, W) uint8
        advance(len(clips))
    return stats


def real_stats_from_dataset(
    dataset: Any,
    extractor: FeatureExtractor,
    n_real: int | None = None,
    batch: int = 17,
    num_workers: int = 0,
    progress: bool = True,
) -> tuple[FeatureStats, int]:
    """Real statistics as the official ``compute_fid.py``: the dataset in order, repeated (pass p = epoch p
    of its random augmentation), ``n_real`` clips (default 10 passes). Returns (stats, passes)."""
    n_videos = len(dataset)
    n_real = 10 * n_videos if n_real is None else n_real
    keys = [(i % n_videos, i // n_videos) for i in range(n_real)]  # (index, epoch)
    with progress_bar(n_real, "real features", progress) as advance:
        stats = dataset_features(
            dataset, keys, lambda clips: extractor.features(to_float(clips))[0], batch, num_workers, advance
        )
    return stats, -(-n_real // n_videos)


def generator_protocol(
    generator: nn.Module, n_frames: int, render_level: int | None, config: Config | None = None
) -> dict[str, Any]:
    """The generator side of a record: frames, level, class balance, and with its config preset and
    resolution."""
    level = render_level or generator.render_level
    record: dict[str, Any] = {"frames": n_frames, "render_level": level}
    if generator.n_classes:
        record["classes"] = {"n_classes": generator.n_classes, "sampling": "balanced (i mod K)"}
    if config is not None:
        record["preset"] = config.preset
        record["resolution"] = config.model.render_size(level)
    return record


def _generated_loops(
    generator: nn.Module,
    extractor: FeatureExtractor,
    score: Callable[[Tensor, Tensor | None], float],
    n: int,
    loops: int,
    batch: int,
    seed: int,
    n_frames: int,
    render_level: int | None,
    advance: Callable[[int], None],
) -> tuple[list[float], tuple[int, ...]]:
    """``score(features, probs)`` of ``n`` generated videos per loop, loop k from seed ``seed + k``.
    Returns (the per-loop values, the generated video shape)."""
    values = []
    for loop in range(loops):
        features, probs, shape = generated_features(
            generator, extractor, n, batch, seed + loop, n_frames, render_level, advance
        )
        values.append(score(features, probs))
    return values, shape


def _loop_record(
    metric: str,
    values: list[float],
    shape: tuple[int, ...],
    seed: int,
    fields: dict[str, Any],
    protocol: dict[str, Any],
    extractor: FeatureExtractor,
) -> dict[str, Any]:
    """The record of a looped protocol: mean and population std of ``values`` (loop k: seed ``seed + k``),
    its ``fields`` (N and the protocol's constants), the generator's ``protocol`` and the weights' hashes."""
    mean, std = mean_and_std(values)
    return {
        "metric": metric,
        "value": {"mean": mean, "std": std, "per_loop": values},
        **fields,
        "loops": len(values),
        "seeds": [seed + k for k in range(len(values))],
        "video_shape": list(shape),
        **protocol,
        "weights_sha256": dict(extractor.weights_sha256),
    }


def evaluate_is(
    generator: nn.Module,
    extractor: FeatureExtractor,
    n: int = 2048,
    loops: int = 10,
    batch: int = 16,
    seed: int = 0,
    splits: int = 1,
    n_frames: int = 16,
    render_level: int | None = None,
    progress: bool = True,
    config: Config | None = None,  # the generator's config (for the record)
) -> dict[str, Any]:
    """The TGANv2 IS protocol; loop k uses seed ``seed + k``. Returns the record (values and protocol)."""

    def score(_, probs: Tensor | None) -> float:
        if probs is None:
            raise ValueError(f"the {extractor.name} extractor gives no class probabilities")
        return inception_score(probs, splits=splits)[0]

    with progress_bar(n * loops, f"IS ({extractor.name})", progress) as advance:
        values, shape = _generated_loops(
            generator, extractor, score, n, loops, batch, seed, n_frames, render_level, advance
        )
    protocol = generator_protocol(generator, n_frames, render_level, config)
    fields = {"n": n, "splits": splits, "eps": 1e-20}
    return _loop_record(f"is_{extractor.name}", values, shape, seed, fields, protocol, extractor)


def evaluate_fid(
    generator: nn.Module,
    extractor: FeatureExtractor,
    real_stats: FeatureStats,
    n: int = 2048,
    loops: int = 10,
    batch: int = 16,
    seed: int = 0,
    n_frames: int = 16,
    render_level: int | None = None,
    progress: bool = True,
    config: Config | None = None,  # the generator's config (for the record)
) -> dict[str, Any]:
    """The TGANv2 FID protocol against precomputed real statistics (covariances with ddof 1)."""

    def score(fake: Tensor, _) -> float:
        return frechet_distance_from_stats(real_stats, fake, ddof=1)

    with progress_bar(n * loops, f"FID ({extractor.name})", progress) as advance:
        values, shape = _generated_loops(
            generator, extractor, score, n, loops, batch, seed, n_frames, render_level, advance
        )
    protocol = generator_protocol(generator, n_frames, render_level, config)
    fields = {"n": n, "covariance_ddof": 1, "n_real": real_stats.n_items}
    return _loop_record(f"fid_{extractor.name}", values, shape, seed, fields, protocol, extractor)


def fvd_real_indices(n_videos: int, n: int, seed: int) -> np.ndarray:
    """``n`` video indices drawn uniformly over all videos (seeded permutations, each video at most
    ⌈n / n_videos⌉ times) — not the first ``n`` files in sorted order (evaluation.md §3.1 pitfall)."""
    rng = np.random.default_rng(seed)
    passes = -(-n // n_videos)
    return np.concatenate([rng.permutation(n_videos) for _ in range(passes)])[:n]


def evaluate_fvd(
    generator: nn.Module,
    detector: Any,
    dataset: Any,
    n: int = 2048,
    loops: int = 1,
    batch: int = 16,
    seed: int = 0,
    n_frames: int = 16,
    render_level: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    config: Config | None = None,  # the generator's config (for the record)
) -> dict[str, Any]:
    """FVD with StyleGAN-V's I3D: ``n`` real clips (uint8, straight from the dataset) vs ``n`` generated."""
    indices = fvd_real_indices(len(dataset), n, seed)
    keys = [(int(i), 0) for i in indices]
    with progress_bar(n * (loops + 1), "FVD (i3d)", progress) as advance:
        real = dataset_features(dataset, keys, detector.features_uint8, batch, num_workers, advance)

        def score(fake: Tensor, _) -> float:
            return frechet_distance_from_stats(real, fake, ddof=0)

        values, shape = _generated_loops(
            generator, detector, score, n, loops, batch, seed, n_frames, render_level, advance
        )
    fields = {
        "n": n,
        "n_real": n,
        "covariance_ddof": 0,
        "real_seed": seed,
        "real_videos_covered": int(len(np.unique(indices))),
    }
    protocol = generator_protocol(generator, n_frames, render_level, config)
    return _loop_record("fvd_i3d", values, shape, seed, fields, protocol, detector)
