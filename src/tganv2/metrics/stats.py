"""Feature statistics for FID/FVD (reference.md §5.3): one float64 running mean and covariance.

The official real statistics are ``numpy.mean`` and ``numpy.cov`` (ddof 1) of the C3D fc7 features, saved
as a float32 npz with keys ``mean`` (D,) and ``cov`` (D, D). ``FeatureStats`` accumulates the same two
moments batch by batch with Chan's pairwise update (numerically stable in float64), saves ``mean``/``cov``
(float64, plus ``n_items``) and loads both its own files and the official float32 ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import WeightsError

__all__ = ["FeatureStats"]


class FeatureStats:
    """Running mean and covariance of feature vectors, in float64."""

    def __init__(
        self,
        dim: int | None = None,  # feature size D; None = taken from the first batch
        chunk: int = 512,  # rows buffered before a float64 merge (fewer D×D updates)
    ) -> None:
        self.dim = dim
        self._n_merged = 0  # rows merged into _mean/_m2 (buffered rows not included)
        self._mean: np.ndarray | None = None  # (D,)
        self._m2: np.ndarray | None = None  # (D, D), sum of centred outer products
        self._cov: np.ndarray | None = None  # set instead of _m2 for stats loaded without n_items
        self.chunk = chunk
        self._pending: list[np.ndarray] = []  # buffered batches, merged once they reach ``chunk`` rows
        self._n_pending = 0

    def update(self, features: torch.Tensor | np.ndarray) -> None:
        """Add a batch of features ``(B, D)``; small batches are buffered and merged in chunks."""
        x = features.detach().cpu().double().numpy() if isinstance(features, torch.Tensor) else features
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {x.shape}")
        if self._cov is not None:
            raise ValueError("cannot add features to statistics loaded without their sample count")
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dimension {x.shape[1]}, expected {self.dim}")
        self._pending.append(x)
        self._n_pending += x.shape[0]
        if self._n_pending >= self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        x = np.concatenate(self._pending)  # (B, D)
        self._pending, self._n_pending = [], 0
        n_batch = x.shape[0]
        batch_mean = x.mean(axis=0)
        centred = x - batch_mean
        batch_m2 = centred.T @ centred  # (D, D)
        if self._n_merged == 0:
            self._mean, self._m2 = batch_mean, batch_m2
        else:  # Chan et al.'s pairwise merge of (n, mean, M2)
            total = self._n_merged + n_batch
            delta = batch_mean - self._mean
            self._m2 = self._m2 + batch_m2 + np.outer(delta, delta) * (self._n_merged * n_batch / total)
            self._mean = self._mean + delta * (n_batch / total)
        self._n_merged += n_batch

    @property
    def n_items(self) -> int:
        """Feature vectors added so far (0 for statistics loaded without a count)."""
        return self._n_merged + self._n_pending

    @property
    def mean(self) -> np.ndarray:
        self._flush()
        if self._mean is None:
            raise ValueError("no features were added")
        return self._mean

    def cov(self, ddof: int = 1) -> np.ndarray:
        """Covariance with ``ddof`` (1 = ``numpy.cov``, the official FID; 0 = StyleGAN-V's FVD)."""
        self._flush()
        if self._m2 is None:
            if self._cov is None:
                raise ValueError("no features were added")
            return self._cov
        if self.n_items - ddof <= 0:
            raise ValueError(f"need more than {ddof} feature vectors for a covariance, got {self.n_items}")
        return self._m2 / (self.n_items - ddof)

    @classmethod
    def from_features(cls, features: torch.Tensor | np.ndarray) -> FeatureStats:
        stats = cls()
        stats.update(features)
        return stats

    def save(self, path: str | Path) -> None:
        """Write ``mean`` (D,), ``cov`` (D, D) with ddof 1, float64, and ``n_items`` to an npz."""
        with Path(path).open("wb") as f:  # a file object: numpy would otherwise append ".npz"
            np.savez(f, mean=self.mean, cov=self.cov(ddof=1), n_items=np.int64(self.n_items))

    @classmethod
    def load(cls, path: str | Path) -> FeatureStats:
        """Load ``mean``/``cov`` from our files or the official float32 ``ucf101_*_stat.npz``."""
        path = Path(path)
        if not path.is_file():
            raise WeightsError(f"{path}: statistics file not found")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as e:
            raise WeightsError(f"{path}: not a readable npz of feature statistics ({e})") from None
        for key in ("mean", "cov"):
            if key not in arrays:
                raise WeightsError(f"{path}: missing key '{key}' (expected 'mean' (D,) and 'cov' (D, D))")
        mean = np.asarray(arrays["mean"], dtype=np.float64)
        cov = np.asarray(arrays["cov"], dtype=np.float64)
        if mean.ndim != 1 or cov.shape != (mean.shape[0], mean.shape[0]):
            raise WeightsError(
                f"{path}: key 'cov' has shape {cov.shape} and 'mean' {mean.shape}, "
                f"expected ({mean.shape[0] if mean.ndim == 1 else 'D'},) and (D, D)"
            )
        stats = cls(dim=mean.shape[0])
        stats._mean = mean
        n_items = int(arrays["n_items"]) if "n_items" in arrays else 0
        if n_items > 1:
            stats._n_merged, stats._m2 = n_items, cov * (n_items - 1)
        else:
            stats._cov = cov
        return stats
