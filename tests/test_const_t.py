"""const-t:T, time-agnostic inference: the timestep part of c replaced by the model's embedding of a fixed T."""
from __future__ import annotations

import copy

import pytest
import torch

from condbench.cli import main
from condbench.policies import BRANCH_COND, BRANCH_UNCOND, PolicySpecError, parse_policy
from condbench.seeding import PairedNoise
from condbench.suites import load_suite


def test_const_t_parses_and_prints_back():
    policy = parse_policy("const-t:500@last:3,branch=cond")
    assert policy.key() == "const-t:500@last:3,branch=cond" and policy.action.value == 500
    assert parse_policy("const-t:0.25").key() == "const-t:0.25"
    for bad, why in (("const-t", "T must be a number"), ("const-t:-1", ">= 0"), ("const-t:5,mask=fixed", "mask=fixed")):
        with pytest.raises(PolicySpecError, match=why):
            parse_policy(bad)


def test_const_t_replaces_the_timestep_part_of_the_rows_it_targets():
    c_t, c_y = torch.randn(4, 6), torch.randn(4, 6)
    fixed = torch.randn(1, 6)
    branch = torch.tensor([BRANCH_COND, BRANCH_COND, BRANCH_UNCOND, BRANCH_UNCOND])
    out = parse_policy("const-t:7,branch=cond").apply(c_t + c_y, c_t, c_y, step=0, num_steps=5, branch=branch,
                                                      timestep_embedding=lambda t: fixed * t)
    assert torch.equal(out.c[:2], c_y[:2] + 7 * fixed) and torch.equal(out.c[2:], (c_t + c_y)[2:])
    assert not out.removed.any()  # nothing is zeroed: no dimension counts as removed
    with pytest.raises(ValueError, match="timestep embedding"):
        parse_policy("const-t:7").apply(c_t + c_y, c_t, c_y, step=0, num_steps=5)


def test_sampling_with_const_t_equals_a_network_whose_timestep_embedder_is_frozen_at_T(tiny_adapter):
    """The sampler's schedule still moves; only the c the network reads is that of t = 300 at every step."""
    frozen = copy.deepcopy(tiny_adapter)
    embedder = frozen.model.t_embedder
    at_300 = embedder(torch.tensor([300.0])).detach()  # (1, D)
    embedder.forward = lambda t: at_300.expand(len(t), -1)
    labels = torch.tensor([1, 4, 7])
    ours = tiny_adapter.sample(labels, PairedNoise(0, range(3)), parse_policy("const-t:300")).samples
    theirs = frozen.sample(labels, PairedNoise(0, range(3))).samples
    plain = tiny_adapter.sample(labels, PairedNoise(0, range(3))).samples
    assert torch.allclose(ours, theirs, atol=1e-6) and not torch.allclose(ours, plain, atol=1e-3)


def test_the_quickstart_and_table2_suites_hold_one_const_t_cell(capsys):
    for name in ("quickstart", "table2"):
        assert [s for s in load_suite(name).policies if parse_policy(s).action.kind == "const-t"] == ["const-t:500"]
    assert main(["run", "quickstart", "--dry-run"]) == 0
    assert "const-t:500" in capsys.readouterr().out
