"""Evaluation (reference.md §5, evaluation.md): C3D IS/FID, FVD with I3D, and a synthetic-data classifier.

Never imports training code. Feature extractors share one interface, ``features(videos) -> (features,
logits | None)``, and one set of statistics (``FeatureStats``) and score functions.

    c3d = load_c3d("conv3d_deepnetA_ucf.npz", "mean2.npz")
    evaluate_is(G, c3d)                              # 2048 × 10 loops, splits 1, mean ± population std
    evaluate_fid(G, c3d, FeatureStats.load("ucf101_192px_stat.npz"))
    ClassifierScorer("clf.safetensors", real=dataset).score(G)   # cheap periodic score for training
"""

from .c3d import C3D, load_c3d
from .classifier import VideoClassifier, load_classifier, save_classifier, train_classifier
from .evaluate import (
    FeatureExtractor,
    evaluate_fid,
    evaluate_fvd,
    evaluate_is,
    generate_videos,
    generated_features,
    real_stats_from_dataset,
)
from .i3d import I3D, load_i3d, videos_to_uint8
from .record import sha256_file, write_record
from .scorer import ClassifierScorer
from .scores import frechet_distance, inception_score, mean_and_std
from .stats import FeatureStats

__all__ = [
    "C3D",
    "ClassifierScorer",
    "FeatureExtractor",
    "FeatureStats",
    "I3D",
    "VideoClassifier",
    "evaluate_fid",
    "evaluate_fvd",
    "evaluate_is",
    "frechet_distance",
    "generate_videos",
    "generated_features",
    "inception_score",
    "load_c3d",
    "load_classifier",
    "load_i3d",
    "mean_and_std",
    "real_stats_from_dataset",
    "save_classifier",
    "sha256_file",
    "train_classifier",
    "videos_to_uint8",
    "write_record",
]
