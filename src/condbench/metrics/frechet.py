"""Frechet distance between Gaussians fitted to features (the FID formula, as pytorch-fid and torch-fidelity compute it)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from scipy import linalg

if TYPE_CHECKING:
    import torch


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F), in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, F), got {features.shape}")
    if not np.isfinite(features).all():
        raise ValueError("features contain NaN or infinity: the samples they came from are broken")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)); adds eps to the diagonals when the product is singular."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics disagree in shape: {mu1.shape} vs {mu2.shape}, {sigma1.shape} vs {sigma2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings():
        # features with dead (always-zero) units give singular covariances; scipy warns, the square root is
        # still the one pytorch-fid and torch-fidelity take, and non-finite results are handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in the matrix square root")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FrechetToReference:
    """Frechet distances to one fixed reference, fast enough to repeat inside a bootstrap.

    tr sqrt(S R) equals the sum of sqrt(eigenvalues) of the symmetric R^1/2 S R^1/2, so with R^1/2 computed
    once each distance costs one symmetric eigen-decomposition (float64, on ``device``) instead of a general
    matrix square root. It agrees with :func:`frechet_distance` to float64 rounding on well-conditioned
    covariances; headline numbers still use :func:`frechet_distance`, the reference implementations' formula.
    """

    def __init__(self, mu: np.ndarray, sigma: np.ndarray, device: str | torch.device = "cpu"):
        import torch

        self.device = torch.device(device)
        self.mu = torch.as_tensor(np.asarray(mu, dtype=np.float64), device=device)
        self.sigma = torch.as_tensor(np.asarray(sigma, dtype=np.float64), device=device)
        values, vectors = torch.linalg.eigh(self.sigma)
        self.sqrt_sigma = (vectors * values.clamp(min=0).sqrt()) @ vectors.T  # (F, F), R^1/2

    def distance(self, features) -> float:
        """FID of features (N, F) to the reference (a tensor already on ``device`` is used in place)."""
        import torch

        x = torch.as_tensor(features, dtype=torch.float64, device=self.device)
        mu = x.mean(0)
        centred = x - mu
        sigma = centred.T @ centred / (len(x) - 1)  # (F, F), unbiased like np.cov
        inner = self.sqrt_sigma @ sigma @ self.sqrt_sigma
        trace_sqrt = torch.linalg.eigvalsh((inner + inner.T) / 2).clamp(min=0).sqrt().sum()
        diff = mu - self.mu
        return float(diff @ diff + sigma.trace() + self.sigma.trace() - 2 * trace_sqrt)
