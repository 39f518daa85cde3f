"""Inception score and Fréchet distance (reference.md §5.2, §5.3; official ``tgan2/evaluations``).

IS (Salimans et al. 2016) from class probabilities p(y|x), per split of the N samples:

    IS = exp( mean_x Σ_y p'(y|x) · (log p'(y|x) − log p̄'(y)) ),   p' = p + 1e-20,  p̄' = mean_x p'

with splits = 1 in the TGANv2 protocol. Fréchet distance between Gaussians (FID, FVD):

    d² = ‖μ0 − μ1‖² + Tr(Σ0 + Σ1 − 2·sqrtm(Σ0 Σ1))

with ``scipy.linalg.sqrtm`` of the product, the real part taken, no eps regularisation.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

from .stats import FeatureStats

__all__ = ["inception_score", "frechet_distance", "frechet_distance_from_stats", "mean_and_std"]

IS_EPS = 1e-20  # added to p before the log, as the official code does


def inception_score(probs: np.ndarray, splits: int = 1, eps: float = IS_EPS) -> tuple[float, float]:
    """IS mean and std over ``splits`` equal parts of ``probs`` ``(N, K)`` (rows sum to 1)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {probs.shape}")
    n = probs.shape[0]
    if not 1 <= splits <= n:
        raise ValueError(f"splits must be in 1..{n}, got {splits}")
    scores = []
    for i in range(splits):
        part = probs[i * n // splits : (i + 1) * n // splits] + eps  # (n_split, K)
        marginal = part.mean(axis=0, keepdims=True)  # (1, K)
        kl = (part * (np.log(part) - np.log(marginal))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def frechet_distance(mu0: np.ndarray, cov0: np.ndarray, mu1: np.ndarray, cov1: np.ndarray) -> float:
    """‖μ0 − μ1‖² + Tr(Σ0 + Σ1 − 2·sqrtm(Σ0 Σ1)), real part, as the official ``compute_fid.py``."""
    mu0, mu1 = np.asarray(mu0, np.float64), np.asarray(mu1, np.float64)
    cov0, cov1 = np.asarray(cov0, np.float64), np.asarray(cov1, np.float64)
    if mu0.shape != mu1.shape or cov0.shape != cov1.shape or cov0.shape != (mu0.size, mu0.size):
        raise ValueError(
            f"mismatched statistics: means {mu0.shape} vs {mu1.shape}, "
            f"covariances {cov0.shape} vs {cov1.shape}"
        )
    sqrt_product = scipy.linalg.sqrtm(cov0 @ cov1)
    diff = mu0 - mu1
    value = diff @ diff + np.trace(cov0) + np.trace(cov1) - 2 * np.trace(sqrt_product)
    return float(np.real(value))


def frechet_distance_from_stats(stats0: FeatureStats, stats1: FeatureStats, ddof: int = 1) -> float:
    """``frechet_distance`` of two ``FeatureStats`` with covariances of ``ddof`` (1: FID, 0: FVD)."""
    return frechet_distance(stats0.mean, stats0.cov(ddof), stats1.mean, stats1.cov(ddof))


def mean_and_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std (``numpy.std``, ddof 0) over loops, as the official scripts report."""
    return float(np.mean(values)), float(np.std(values))
