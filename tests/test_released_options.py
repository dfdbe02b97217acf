"""Released models: training checkpoints load their EMA weights, the sampler is a documented option, and the
dry-run plan counts exactly the denoiser evaluations a real run makes."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import condbench
from condbench.adapters.dit_model import DiTConfig
from condbench.adapters.transport import Dopri5ODE
from condbench.checkpoints import read_metadata
from condbench.plan import costs, expand
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise
from condbench.suites import Suite

from .conftest import random_dit

FIXTURES = Path(__file__).parent / "fixtures"
TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2, num_classes=10)


def _meta(path: Path, key: str):
    return json.loads(read_metadata(path)[key])


@pytest.mark.parametrize("name, learn_sigma, extra", [
    ("dit-xl-2", True, {}),
    ("sit-xl-2", True, {}),
    ("repa-sit-xl-2", False, {"projectors.0.0.weight": torch.zeros(2, 16)}),  # REPA's training-only head
])
def test_training_checkpoints_load_their_ema(tmp_path, name, learn_sigma, extra):
    """What DiT's, SiT's and REPA's training scripts save: {model, ema, opt, args[, steps]}; the EMA is used."""
    config = DiTConfig(**TINY, class_dropout_prob=0.1, learn_sigma=learn_sigma)
    ema, online = random_dit(config, seed=1), random_dit(config, seed=2)
    optimizer = torch.optim.AdamW(online.parameters(), lr=1e-4)
    torch.save({"model": online.state_dict(), "ema": {**ema.state_dict(), **extra}, "opt": optimizer.state_dict(),
                "args": argparse.Namespace(model="DiT-XL/2", lr=1e-4), "steps": 7}, tmp_path / "ckpt.pt")
    adapter = condbench.load_adapter(name, ckpt=str(tmp_path / "ckpt.pt"), model_config=dict(TINY, learn_sigma=learn_sigma))
    y, t = torch.tensor([1, 4]), torch.tensor([10.0, 500.0])
    with torch.no_grad():
        t_part, y_part = ema.embed_parts(t, y)
    assert torch.equal(adapter.embed(y, t), t_part + y_part)
    assert adapter.describe()["checkpoint"]["state_keys"] == ["ema"]


def _sit(**options):
    weights = FIXTURES / "transport" / "sit.safetensors"
    return condbench.load_adapter("sit-xl-2", ckpt=str(weights), model_config=_meta(weights, "tiny"), **options)


def test_the_sit_ode_sampler_is_chosen_by_name_and_gives_the_official_dopri5_samples():
    ode = _sit(sampler="ode", num_steps=8)
    assert isinstance(ode.solver, Dopri5ODE)
    final = ode.sample(torch.tensor([1, 7, 3]), PairedNoise(0, [0, 1, 2])).samples
    official = load_file(str(FIXTURES / "transport" / "expected.safetensors"))["sit_ode_dopri5/final"]
    assert torch.allclose(final, official, atol=2e-4, rtol=1e-5)  # the dopri5 bound of test_transport_parity
    sde = _sit(num_steps=8)
    assert sde.describe()["sampler"]["choice"] == "sde" and ode.describe()["sampler"]["choice"] == "ode"
    assert sde.describe()["sampler"] != ode.describe()["sampler"]  # so the cache keys differ


def test_an_unknown_sampler_names_the_choices():
    with pytest.raises(ValueError, match="sit-xl-2 has no sampler 'heun'; its samplers: sde, ode, ode-euler"):
        _sit(sampler="heun")
    with pytest.raises(ValueError, match="dit-digits has no sampler 'ode'; its samplers: ddpm"):
        condbench.load_adapter("dit-digits", sampler="ode")


def _options(name: str) -> dict:
    """Each model's options for a short run on its fixture."""
    if name == "dit-digits":
        return {"num_steps": 12}
    if name in ("repa-sit-xl-2", "sit-xl-2"):
        weights = FIXTURES / "transport" / ("repa.safetensors" if name.startswith("repa") else "sit.safetensors")
        return {"ckpt": str(weights), "model_config": _meta(weights, "tiny"), "num_steps": 10}
    if name == "lightningdit-xl-1":
        weights = FIXTURES / "lightningdit" / "released.weights.safetensors"
        return {"ckpt": str(weights), "model_config": _meta(weights, "config"), "num_steps": 12}
    if name == "mdt-xl-2":
        weights = FIXTURES / "mdt" / "weights.safetensors"
        return {"ckpt": str(weights), "model_config": _meta(weights, "config"), "num_steps": 12}
    weights = FIXTURES / "uvit" / "weights.safetensors"
    return {"ckpt": str(weights), "model_config": _meta(weights, "meta")["config"], "num_steps": 8}


@pytest.mark.parametrize("name", ["dit-digits", "repa-sit-xl-2", "lightningdit-xl-1", "mdt-xl-2", "uvit-h-2"])
def test_the_dry_run_counts_the_evaluations_a_real_run_makes(name):
    policies = ["baseline", "tail:0.05,branch=uncond", "tail:0.05@last:4", "drop-cond@last:3"]
    suite = Suite(name="plan", task="imagenet", models=[name], policies=policies, model_options={name: _options(name)})
    plan = {c.cell.policy.canonical(): c for c in costs(suite, expand(suite), samples=3)}
    adapter = condbench.load_adapter(name, **_options(name))
    labels, noise = torch.tensor([1, 7, 3]), lambda: PairedNoise(0, [0, 1, 2])
    kept = sorted({c.shared_steps for c in plan.values()} - {0})
    baseline = adapter.sample(labels, noise(), keep_states=kept)
    assert adapter.denoiser_evaluations == plan["baseline"].planned == plan["baseline"].from_scratch
    for spec in policies[1:]:
        cost, before = plan[parse_policy(spec).canonical()], adapter.denoiser_evaluations
        start = baseline.states.get(cost.shared_steps)
        adapter.sample(labels, noise(), parse_policy(spec), start=start)
        assert adapter.denoiser_evaluations - before == cost.planned, spec
    if name == "lightningdit-xl-1":  # the official num_steps counts grid points: one evaluation fewer
        assert plan["baseline"].steps == 11
    if name in ("repa-sit-xl-2", "lightningdit-xl-1", "mdt-xl-2"):  # some steps are not guided
        assert plan["baseline"].from_scratch < 3 * 2 * plan["baseline"].steps


def test_the_dry_run_says_an_adaptive_sampler_has_no_count_in_advance():
    from condbench.plan import format_plan

    suite = Suite(name="plan", task="imagenet", models=["sit-xl-2"], policies=["baseline"],
                  model_options={"sit-xl-2": {**_options("sit-xl-2"), "sampler": "ode"}})
    plan = costs(suite, expand(suite), samples=3)
    assert plan[0].planned is None and "adaptive" in format_plan(plan)
