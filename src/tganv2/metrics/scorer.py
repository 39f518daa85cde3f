"""A cheap periodic score for the training loop: classifier-IS and classifier-FID from cached real stats.

Same code path as the paper's protocol (reference.md §5.2, §5.3), with the synthetic-data classifier in
place of C3D and a few hundred samples instead of 2048 × 10, so that it runs in seconds on a CPU. A
class-conditional generator is sampled class-balanced (``generate_videos``)::

    scorer = ClassifierScorer("clf.safetensors", real=dataset_or_stats, n_samples=256)
    scorer.score(generator, seed=it)   # {"cls_is": ..., "cls_fid": ...}; G's train/eval mode is restored
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import scipy.linalg
import torch
from torch import nn

from .classifier import VideoClassifier, load_classifier
from .evaluate import generated_features, real_stats_from_dataset
from .scores import frechet_distance_from_stats, inception_score
from .stats import FeatureStats

__all__ = ["ClassifierScorer"]


class ClassifierScorer:
    def __init__(
        self,
        classifier: str | Path | VideoClassifier,  # .safetensors from `evaluate train-classifier`, or a model
        real: str | Path | FeatureStats | Any,  # stats .npz, FeatureStats, or a dataset to compute them from
        n_samples: int = 256,  # generated videos per score
        batch: int = 32,  # videos per forward pass
        device: str | torch.device = "cpu",  # where the classifier runs
        n_real: int | None = None,  # clips for the real stats when ``real`` is a dataset (default: all)
        n_frames: int | None = None,  # generated frames (default: the classifier's clip length)
        render_level: int | None = None,  # generator level (default: the generator's render_level)
    ) -> None:
        if isinstance(classifier, VideoClassifier):
            self.classifier = classifier.to(device).eval()
        else:
            self.classifier = load_classifier(classifier, device)
        if isinstance(real, FeatureStats):
            self.real_stats = real
        elif isinstance(real, (str, Path)):
            self.real_stats = FeatureStats.load(real)
        else:
            self.real_stats, _ = real_stats_from_dataset(
                real, self.classifier, n_real or len(real), batch, progress=False
            )
        if self.real_stats.mean.shape[0] != self.classifier.feature_dim:
            raise ValueError(
                f"real statistics have {self.real_stats.mean.shape[0]} features, the classifier "
                f"{self.classifier.feature_dim}: they come from a different classifier"
            )
        self.n_samples, self.batch = n_samples, batch
        self.n_frames = n_frames or self.classifier.frames
        self.render_level = render_level

    def score(self, generator: nn.Module, seed: int = 0) -> dict[str, float]:
        """Classifier-IS (splits 1) and classifier-FID of ``n_samples`` videos drawn with ``seed``."""
        fake, probs, _ = generated_features(
            generator, self.classifier, self.n_samples, self.batch, seed, self.n_frames, self.render_level
        )
        real = self.real_stats
        with warnings.catch_warnings():  # early generators give singular covariances: not worth a warning
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            fid = frechet_distance_from_stats(real, fake, ddof=1)
        return {"cls_is": inception_score(probs)[0], "cls_fid": fid}
