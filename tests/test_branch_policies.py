"""A policy restricted to one guidance branch acts on that branch's rows only, at every step of every sampler.

The reference knows nothing of branch labels: the network itself zeroes small |c_i| in the rows whose label is
the null class (the unconditional branch), or in the others. At a step where a sampler evaluates no
unconditional branch (REPA's and MG's unguided steps, LightningDiT's t < 0.125, MDT's early steps whose
power-cosine scale is exactly 1), nothing changes, as in the official code.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.adapters.dit_model import DiTConfig
from condbench.adapters.mdt import MDTAdapter
from condbench.adapters.sit import LIGHTNINGDIT_ODE, MG_SDE, REPA_SDE, TransportAdapter
from condbench.policies import mask_for, parse_policy
from condbench.seeding import PairedNoise

from .conftest import random_dit

TINY = DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4, num_classes=10,
                 class_dropout_prob=0.1, learn_sigma=False)
LABELS = torch.tensor([1, 7, 3, 0])
TAU = 0.05


def adapters():
    """(name, adapter factory): samplers that skip the unconditional branch at some steps, and plain DiT."""
    repa = dataclasses.replace(REPA_SDE, num_steps=10)
    lightning = dataclasses.replace(LIGHTNINGDIT_ODE, num_steps=12)
    mg = dataclasses.replace(MG_SDE, num_steps=8)
    return {
        "repa": lambda: TransportAdapter(random_dit(TINY), "repa", spec=repa),
        "lightningdit": lambda: TransportAdapter(random_dit(TINY), "lightningdit", spec=lightning),
        "mg": lambda: TransportAdapter(random_dit(TINY), "mg", spec=mg),
        "mdt": lambda: MDTAdapter(random_dit(dataclasses.replace(TINY, learn_sigma=True)), "mdt", num_steps=10,
                                  cfg_scale=3.8, scale_pow=4.0),
        "dit": lambda: DiTAdapter(random_dit(dataclasses.replace(TINY, learn_sigma=True)), "dit", num_steps=8),
    }


def masked_inside_network(adapter, null_rows: bool):
    """Make the network zero |c_i| < TAU in the rows whose label is (``null_rows``) or is not the null class."""
    model, forward = adapter.model, adapter.model.forward
    null = adapter.num_classes

    def hooked(x, t, y, hook=None):
        assert hook is None

        def mask(c, t_part, cond_part):
            rows = (y == null) if null_rows else (y != null)  # (N,)
            removed = mask_for(parse_policy(f"tail:{TAU}").action, c) & rows[:, None]
            return torch.where(removed, torch.zeros_like(c), c)

        return forward(x, t, y, mask)

    model.forward = hooked
    return adapter


@pytest.mark.parametrize("name", list(adapters()))
@pytest.mark.parametrize("branch", ["uncond", "cond"])
def test_a_branch_restricted_policy_changes_only_that_branch(name, branch):
    make = adapters()[name]
    policy = parse_policy(f"tail:{TAU},branch={branch}")
    ours = make().sample(LABELS, PairedNoise(3, range(len(LABELS))), policy)
    reference = masked_inside_network(make(), null_rows=branch == "uncond").sample(
        LABELS, PairedNoise(3, range(len(LABELS))))
    assert torch.equal(ours.samples, reference.samples)


@pytest.mark.parametrize("name", ["repa", "lightningdit", "mdt", "mg"])
def test_steps_without_an_unconditional_branch_are_not_counted_as_acting(name):
    adapter = adapters()[name]()
    guided = [s for s in range(adapter.sampler_steps) if adapter.guidance_scale(s) != 1.0]
    assert len(guided) < adapter.sampler_steps  # the case of the issue: some steps evaluate no uncond branch
    out = adapter.sample(LABELS, PairedNoise(0, range(len(LABELS))), parse_policy(f"tail:{TAU},branch=uncond"))
    assert out.trace.active_steps == guided
    unguided = set(range(adapter.sampler_steps)) - set(guided)
    assert all(out.trace.removed_per_step[s] == 0 for s in unguided)
    if name == "mg":  # no guidance at all: the policy is the baseline
        baseline = adapters()[name]().sample(LABELS, PairedNoise(0, range(len(LABELS))))
        assert torch.equal(out.samples, baseline.samples) and out.trace.mean_removed() == 0


def test_a_branch_restricted_policy_refuses_rows_without_branch_labels():
    policy = parse_policy(f"tail:{TAU},branch=uncond")
    c = torch.randn(3, 8)
    with pytest.raises(ValueError, match="did not say which guidance branch"):
        policy.apply(c, c, c, step=0, num_steps=1)
