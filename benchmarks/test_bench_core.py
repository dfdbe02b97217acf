"""Timings of the core (run with `tox -e bench`; printed, never asserted).

- the full analysis of 1,000 conditions of a 1,152-d c (every statistic and the cosine matrix);
- one sampling step of the digits DiT with and without a policy, to show what the hook costs.
"""
import pytest
import torch

import condbench
from condbench.adapters.base import PolicyHook
from condbench.analysis import embedding_statistics
from condbench.policies import parse_policy


def test_analysis_1000_conditions_1152_dims(benchmark):
    c = torch.randn(1000, 1152, generator=torch.Generator().manual_seed(0))
    stats = benchmark(embedding_statistics, c)
    assert stats.arrays["cosine"].shape == (1000, 1000)


@pytest.fixture(scope="module")
def step_inputs():
    adapter = condbench.load_adapter("dit-digits")
    n = 1000
    x = torch.randn(2 * n, 1, 8, 8)
    t = torch.full((2 * n,), 999)
    y = torch.cat([torch.arange(10).repeat(n // 10), torch.full((n,), 10)])
    branch = torch.cat([torch.zeros(n), torch.ones(n)])
    return adapter, x, t, y, branch


@pytest.mark.parametrize("spec", [None, "tail:0.05", "random-like:tail:0.05", "tail:0.05,mask=fixed"])
def test_sampling_step_with_policy(benchmark, step_inputs, spec):
    adapter, x, t, y, branch = step_inputs
    policy = None if spec is None else parse_policy(spec)

    def step():
        hooks = PolicyHook(policy, 1, reference=adapter.mean_embedding)
        with torch.no_grad():
            return adapter.model(x, t, y, hooks.at(0, t[:1], branch))

    benchmark.group = "digits DiT step, batch 2x1000"
    benchmark(step)
