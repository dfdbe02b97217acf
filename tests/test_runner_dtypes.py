"""The runner on a model that samples in bfloat16 or float16 (SD3.5 and FLUX do), on the CPU: baseline, a
late-acting policy resumed from the baseline's kept state, mask=fixed, policies together, and a second run
from the cache. Tiny random diffusers components (tests/test_sd3.py), the text task without metric networks."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("diffusers")
from diffusers import FlowMatchEulerDiscreteScheduler

from condbench import registry
from condbench.adapters.sd3 import SD3Adapter
from condbench.cache import ShardCache
from condbench.runner import RunOptions, run_suite, slug
from condbench.seeding import PairedNoise
from condbench.stored_arrays import state_arrays, state_tensor
from condbench.suites import Suite

from .test_sd3 import PROMPTS, STEPS, embedding_table, tiny_transformer, tiny_vae

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
LATE, FIXED = "tail:0.3@last:2", "tail:0.3,mask=fixed"
POLICIES = ["baseline", LATE, FIXED]
QUIET = {"log": lambda _: None}


def tiny_sd35(dtype: torch.dtype) -> SD3Adapter:
    """SD3.5's transformer and VAE, tiny and random, in ``dtype`` (the release's dtype option)."""
    return SD3Adapter(tiny_transformer(sd35=True).to(dtype), tiny_vae().to(dtype),
                      FlowMatchEulerDiscreteScheduler(shift=3.0), embedding_table(), f"tiny-sd35-{dtype}",
                      num_steps=STEPS, cfg_scale=7.0, checkpoint={"sha256": "0" * 64})


@pytest.fixture(params=list(DTYPES))
def model(request, monkeypatch) -> tuple[str, torch.dtype]:
    """A registered tiny SD3.5 sampling in the parameter's dtype."""
    name, dtype = f"tiny-sd35-{request.param}", DTYPES[request.param]
    monkeypatch.setitem(registry.MODELS, name, registry.ModelEntry(
        name, "text", tiny_sd35(dtype).embed_dim, "flow-match euler", "built in the test",
        lambda **_: tiny_sd35(dtype), STEPS, 7.0))
    return name, dtype


def suite(tmp_path, name: str, together: int | str = 1) -> Suite:
    (tmp_path / "prompts.txt").write_text("\n".join(PROMPTS))
    return Suite(name="dtypes", task="text", models=[name], policies=POLICIES, batch_size=2, shard_size=2,
                 bootstrap=5, together=together,
                 task_options={"prompt_file": str(tmp_path / "prompts.txt"), "fid": False, "clip_model": None,
                               "image_size": 8})


def grids(run_dir, name: str) -> dict[str, np.ndarray]:
    """The decoded images (float32) of every sample of every cell, as the run stored them."""
    with np.load(run_dir / "samples_grid.npz") as data:
        return {p: data[slug(f"{name}|{p}")] for p in POLICIES}


def uninterrupted(name: str, policy: str) -> np.ndarray:
    """The policy's decoded images sampled from step 0 in one call, no cache, no kept state."""
    from condbench.policies import parse_policy

    adapter = registry.load_adapter(name)
    adapter.set_condition_mean(PROMPTS)
    out = adapter.sample(PROMPTS, PairedNoise(0, range(len(PROMPTS))), parse_policy(policy))
    return adapter.decode(out.samples).float().numpy()


def test_a_half_precision_model_runs_every_policy_and_resumes_bit_identically(tmp_path, model):
    name, dtype = model
    results = json.loads(run_suite(suite(tmp_path, name), tmp_path / "run", RunOptions(**QUIET)).read_text())
    late = next(r for r in results["records"] if r["policy"] == LATE)
    assert late["config"]["shared_prefix_steps"] == STEPS - 2 and late["dims_removed"] > 0  # resumed from the state
    stored = grids(tmp_path / "run", name)
    for policy in POLICIES:  # the resumed late policy equals its uninterrupted trajectory bit for bit
        assert np.array_equal(stored[policy], uninterrupted(name, policy)), policy
    assert not np.array_equal(stored[LATE], stored["baseline"])


def test_kept_states_round_trip_exactly_in_the_model_dtype(tmp_path, model):
    name, dtype = model
    adapter = registry.load_adapter(name)
    state = adapter.sample(PROMPTS, PairedNoise(0, range(3)), keep_states=[STEPS - 2]).states[STEPS - 2].x
    assert state.dtype == dtype
    cache = ShardCache(tmp_path / "cache", **QUIET)
    cache.put("ab" * 32, state_arrays(state))
    back = state_tensor(cache.get("ab" * 32))
    assert back.dtype == dtype and torch.equal(back, state)


def test_policies_together_and_a_rerun_from_the_cache_give_the_same_images(tmp_path, model):
    name, _ = model
    alone = tmp_path / "alone"
    run_suite(suite(tmp_path, name), alone, RunOptions(**QUIET))
    rerun = json.loads(run_suite(suite(tmp_path, name), alone, RunOptions(**QUIET)).read_text())
    assert all(r["work"]["shards_from_cache"] == r["work"]["shards"] == 2 for r in rerun["records"])
    together = tmp_path / "together"
    run_suite(suite(tmp_path, name, together="all"), together, RunOptions(**QUIET))
    first, again = grids(alone, name), grids(together, name)
    for policy in POLICIES:
        assert np.array_equal(first[policy], again[policy]), policy
