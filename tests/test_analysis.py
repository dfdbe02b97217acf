"""The statistics against vectors with known answers and against independent computations."""
import math

import numpy as np
import pytest
import torch

from condbench.analysis import (analyze, cosine_matrix, embedding_statistics, participation_ratio, sparsity_ratio,
                                sweep_steps)


def test_pr_of_one_hot_is_one_and_of_constant_is_d():
    d = 1152
    one_hot = torch.zeros(1, d)
    one_hot[0, 7] = -3.0
    constant = torch.full((1, d), 0.25)
    assert participation_ratio(one_hot).item() == pytest.approx(1.0)
    assert participation_ratio(constant).item() == pytest.approx(d)
    stats = embedding_statistics(torch.cat([one_hot, constant]), keep_matrix=False).summary
    # nPR is per condition, then averaged: (1/d + 1) / 2, not the nPR of the mean vector
    assert stats["npr"]["mean"] == pytest.approx((1 / d + 1) / 2)
    assert stats["pr"]["mean"] == pytest.approx((1 + d) / 2)


def test_pr_matches_the_formula_on_random_vectors():
    c = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    expected = c.abs().sum(1) ** 2 / (c ** 2).sum(1)
    assert torch.allclose(participation_ratio(c).float(), expected, rtol=1e-6)


def test_k_equal_magnitudes_have_pr_k():
    c = torch.zeros(1, 100)
    c[0, :17] = torch.tensor([1.0, -1.0] * 8 + [1.0]) * 0.3
    assert participation_ratio(c).item() == pytest.approx(17)


def test_cosine_matrix_known_values():
    c = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0], [-1.0, 0.0]])
    cos = cosine_matrix(c)
    assert cos[0, 1].item() == pytest.approx(0.0)
    assert cos[0, 2].item() == pytest.approx(1 / math.sqrt(2))
    assert cos[0, 3].item() == pytest.approx(-1.0)
    assert torch.allclose(torch.diagonal(cos), torch.ones(4, dtype=torch.float64))


def test_cosine_summary_excludes_the_diagonal():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = embedding_statistics(c).summary["cosine"]
    assert s["mean"] == pytest.approx(0.0) and s["max"] == pytest.approx(0.0)


def test_cosine_matrix_agrees_with_numpy():
    c = np.random.default_rng(0).normal(size=(30, 16))
    unit = c / np.linalg.norm(c, axis=1, keepdims=True)
    assert np.allclose(cosine_matrix(torch.from_numpy(c)).numpy(), unit @ unit.T)


def test_sparsity_ratio_counts_strictly_below_tau():
    c = torch.tensor([[0.0, 0.005, 0.01, 0.5], [1.0, 1.0, 1.0, 0.001]], dtype=torch.float64)
    s = sparsity_ratio(c, [0.01, 0.02])
    assert s["0.01"] == pytest.approx((2 / 4 + 1 / 4) / 2)  # 0.01 itself is not below 0.01
    assert s["0.02"] == pytest.approx((3 / 4 + 1 / 4) / 2)


def test_sparsity_times_d_is_what_the_tail_policy_removes():
    from condbench.policies import parse_policy

    c = torch.randn(50, 64, generator=torch.Generator().manual_seed(0)) * 0.02  # float32, like models
    c[0, 0] = 0.01  # exactly at a threshold: float32 0.01 lies below the float64 0.01
    for tau in (0.005, 0.01, 0.02):
        removed = parse_policy(f"tail:{tau}").apply(c, c, c, step=0, num_steps=1).removed
        assert sparsity_ratio(c, [tau])[f"{tau:g}"] * 64 == pytest.approx(float(removed.sum(1).double().mean()))


def test_variance_is_population_variance_and_heads_rank_dimensions():
    c = torch.tensor([[0.0, 5.0, 0.1], [2.0, 5.0, -0.1]])
    stats = embedding_statistics(c, head_k=1)
    assert np.allclose(stats.arrays["dim_var"], [1.0, 0.0, 0.01])
    assert stats.summary["head_by_magnitude"] == [1]
    assert stats.summary["head_by_variance"] == [0]
    assert stats.summary["head_overlap"] == 0.0


def test_sweep_steps_include_both_ends():
    assert sweep_steps(250, 20)[0] == 0 and sweep_steps(250, 20)[-1] == 249
    assert len(sweep_steps(250, 20)) == 20
    assert sweep_steps(5, 20) == [0, 1, 2, 3, 4]


def test_analyze_reports_c_its_parts_and_the_trajectory(tiny_adapter):
    summary, arrays = analyze(tiny_adapter, torch.arange(10), sweep_points=5)
    assert summary["t"] == 999.0  # DiT's first sampling step is pure noise
    assert summary["c"]["num_conditions"] == 10 and summary["c"]["dim"] == 32
    parts = tiny_adapter.embed_parts(torch.arange(10), 999)
    assert torch.allclose(parts.c, parts.t + parts.cond)
    assert np.allclose(arrays["c_matrix"], parts.c.double().numpy())
    assert arrays["c_cosine"].shape == (10, 10)
    assert [row["step"] for row in summary["sweep"]] == sweep_steps(12, 5)
    assert len(arrays["sweep_npr_mean"]) == 5
    # the timestep part is shared by all conditions, so c is more aligned than the condition part alone
    assert summary["c"]["cosine"]["mean"] > summary["cond_only"]["cosine"]["mean"]
