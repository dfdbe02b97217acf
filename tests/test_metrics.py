"""Metric formulas against known answers."""
import numpy as np
import pytest
import torch

from condbench.metrics import class_fidelity, feature_statistics, frechet_distance, inception_score


def test_frechet_distance_of_diagonal_gaussians_has_a_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    v1, v2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))
    assert frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 8))
    mu, sigma = feature_statistics(features)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)
    assert np.allclose(sigma, np.cov(features.T, ddof=1))


def test_feature_statistics_refuse_nan():
    features = np.ones((10, 3))
    features[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(features)


def test_inception_score_known_answers():
    k = 10
    confident = torch.full((k * 5, k), -1e4)
    confident[torch.arange(k * 5), torch.arange(k * 5) % k] = 0.0
    assert inception_score(confident)[0] == pytest.approx(k, rel=1e-6)
    assert inception_score(torch.zeros(20, k))[0] == pytest.approx(1.0)
    mean, std = inception_score(confident, split_size=10)
    assert mean == pytest.approx(k, rel=1e-6) and len(confident) // 10 == 5


def test_class_fidelity_counts_top1_hits():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0]])
    assert class_fidelity(logits, torch.tensor([0, 1, 1])) == pytest.approx(2 / 3)
