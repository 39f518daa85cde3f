"""Closed-form checks of the IS and Fréchet distance (reference.md §5.2, §5.3) and of FeatureStats."""

from __future__ import annotations

import numpy as np
import pytest

from tganv2.errors import WeightsError
from tganv2.metrics.scores import frechet_distance, inception_score, mean_and_std
from tganv2.metrics.stats import FeatureStats


@pytest.mark.parametrize("n_classes", [1, 7, 101])
def test_is_of_one_hot_predictions_spread_uniformly_equals_number_of_classes(n_classes):
    probs = np.eye(n_classes)[np.arange(20 * n_classes) % n_classes]  # (20K, K), each class equally often
    mean, std = inception_score(probs)
    assert mean == pytest.approx(n_classes, rel=1e-9)
    assert std == 0.0


def test_is_of_identical_predictions_is_one():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10))
    mean, _ = inception_score(np.tile(p, (64, 1)))
    assert mean == pytest.approx(1.0, abs=1e-12)


def test_is_matches_the_kl_formula_with_eps_and_splits():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.full(5, 0.3), size=40)
    probs[0] = [1, 0, 0, 0, 0]  # a zero probability: the eps keeps log finite
    scores = []
    for part in (probs[:20], probs[20:]):
        part = part + 1e-20
        kl = np.sum(part * (np.log(part) - np.log(part.mean(0))), axis=1).mean()
        scores.append(np.exp(kl))
    mean, std = inception_score(probs, splits=2)
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_fid_of_a_distribution_with_itself_is_zero():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    stats = FeatureStats.from_features(x)
    assert frechet_distance(stats.mean, stats.cov(), stats.mean, stats.cov()) == pytest.approx(0.0, abs=1e-8)


def test_fid_of_two_diagonal_gaussians_equals_the_closed_form():
    mu0, mu1 = np.array([0.0, 1.0, -2.0, 3.0]), np.array([1.0, 1.0, 0.5, -1.0])
    var0, var1 = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 0.25, 0.5])
    expected = np.sum((mu0 - mu1) ** 2) + np.sum(var0 + var1 - 2 * np.sqrt(var0 * var1))
    value = frechet_distance(mu0, np.diag(var0), mu1, np.diag(var1))
    assert value == pytest.approx(expected, rel=1e-10)


def test_fid_of_rotated_full_covariances_equals_the_closed_form():
    # Σ1 = R Σ0 Rᵀ with R a rotation commuting with nothing in particular: Tr sqrt(Σ0Σ1) from eigenvalues.
    rng = np.random.default_rng(3)
    a = rng.normal(size=(6, 6))
    cov0 = a @ a.T + np.eye(6)
    cov1 = 2.5 * cov0  # Σ0Σ1 = 2.5 Σ0², sqrt = √2.5 Σ0
    expected = 4.0 + np.trace(cov0) * (1 + 2.5 - 2 * np.sqrt(2.5))
    value = frechet_distance(np.zeros(6), cov0, np.full(6, 2 / np.sqrt(6)), cov1)
    assert value == pytest.approx(expected, rel=1e-8)


def test_mean_and_std_is_the_population_std():
    assert mean_and_std([1.0, 3.0]) == (2.0, 1.0)


def test_feature_stats_match_numpy_in_chunks():
    rng = np.random.default_rng(4)
    x = rng.normal(loc=50.0, scale=3.0, size=(1001, 8))  # large offset: checks the stable merge
    stats = FeatureStats(chunk=64)
    for start in range(0, len(x), 7):
        stats.update(x[start : start + 7])
    assert stats.n_items == 1001
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov(), np.cov(x, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(stats.cov(ddof=0), np.cov(x, rowvar=False, ddof=0), rtol=1e-10)


def test_feature_stats_save_load_and_official_float32_files(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(300, 5))
    stats = FeatureStats.from_features(x)
    stats.save(tmp_path / "ours.npz")
    loaded = FeatureStats.load(tmp_path / "ours.npz")
    np.testing.assert_array_equal(loaded.mean, stats.mean)
    np.testing.assert_allclose(loaded.cov(), stats.cov(), rtol=1e-15)
    assert loaded.n_items == 300

    # the official compute_fid.py writes float32 'mean' and 'cov' only
    np.savez(
        tmp_path / "official.npz",
        mean=x.mean(0).astype(np.float32),
        cov=np.cov(x, rowvar=False).astype(np.float32),
    )
    official = FeatureStats.load(tmp_path / "official.npz")
    assert official.mean.dtype == np.float64
    np.testing.assert_allclose(official.cov(), np.cov(x, rowvar=False), rtol=1e-6)


def test_feature_stats_load_rejects_malformed_files(tmp_path):
    np.savez(tmp_path / "no_cov.npz", mean=np.zeros(4))
    with pytest.raises(WeightsError, match="missing key 'cov'"):
        FeatureStats.load(tmp_path / "no_cov.npz")
    np.savez(tmp_path / "bad.npz", mean=np.zeros(4), cov=np.zeros((3, 3)))
    with pytest.raises(WeightsError, match=r"'cov' has shape \(3, 3\)"):
        FeatureStats.load(tmp_path / "bad.npz")
    with pytest.raises(WeightsError, match="not found"):
        FeatureStats.load(tmp_path / "missing.npz")
