"""The paired bootstrap interval on synthetic features with a known shift and a known change of spread.

FID of a finite sample is biased upwards by an amount that grows with the sample's spread, and resampling with
replacement adds a further shift of the same kind. A policy that widens the features therefore moves the raw
percentiles of resampled differences away from the headline delta (here they never contain it, as the issue
saw at N=5000: delta 1.80, percentiles [2.40, 2.58]); the interval must not move with them. The true change is
the expected change of FID at this sample size, estimated by drawing the experiment many times.
"""
import numpy as np
import torch

from condbench.metrics.frechet import feature_statistics, frechet_distance
from condbench.paired import PairedBootstrap

DIM, N, SPREAD, NOISE = 48, 150, 1.3, 0.02  # dimension close to N, as Inception's 2048 to 5,000 samples


def fid(features: torch.Tensor) -> dict[str, float]:
    """FID to N(0, I): |mu|^2 + tr S + d - 2 tr S^1/2, the Frechet distance with an identity reference."""
    x = features.numpy()
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    root_trace = np.sqrt(np.linalg.eigvalsh(sigma).clip(min=0)).sum()
    return {"fid": float(mu @ mu + np.trace(sigma) + DIM - 2 * root_trace)}


def paired_draw(rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Baseline ~ N(0, I); the policy's sample i widens the baseline's sample i (the same noise)."""
    base = rng.standard_normal((N, DIM))
    return torch.from_numpy(base), torch.from_numpy(SPREAD * base + NOISE * rng.standard_normal((N, DIM)))


def test_the_fid_used_here_is_the_frechet_distance():
    x = paired_draw(np.random.default_rng(1))[1]
    assert abs(fid(x)["fid"] - frechet_distance(*feature_statistics(x.numpy()), np.zeros(DIM), np.eye(DIM))) < 1e-8


def test_interval_contains_its_delta_and_covers_the_true_change_at_its_nominal_rate():
    rng = np.random.default_rng(0)
    true_change = np.mean([fid(p)["fid"] - fid(b)["fid"] for b, p in (paired_draw(rng) for _ in range(2000))])
    covered, contains_delta, raw_contains_delta, replications, raw_checked = 0, 0, 0, 100, 30
    for r in range(replications):
        base, policy = paired_draw(rng)
        bootstrap = PairedBootstrap(fid, (base,), resamples=100, seed=r)
        change = bootstrap.compare((policy,), fid(policy))["fid"]
        low, high = change["ci95"]
        covered += low <= true_change <= high
        contains_delta += low <= change["delta"] <= high
        if r < raw_checked:
            raw_low, raw_high = np.percentile(bootstrap.differences((policy,))["fid"], [2.5, 97.5])
            raw_contains_delta += raw_low <= change["delta"] <= raw_high
    assert contains_delta == replications
    assert 0.88 <= covered / replications <= 0.99, covered  # nominal 95%; 100 replications: about +-2%
    assert raw_contains_delta / raw_checked < 0.1  # the old percentile interval misses its own delta
