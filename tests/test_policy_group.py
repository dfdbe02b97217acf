"""Policies sampled together (one sampler call, a PolicyGroup) equal the same policies sampled alone: bit for bit in
float32 where the network runs in fixed microbatches (every row's arithmetic is then independent of the batch), and
within float rounding otherwise (as a change of batch size); per adapter, and through the runner (cache arrays,
records, prefix sharing, resume)."""
import json

import numpy as np
import pytest
import torch

from condbench.cli import main
from condbench.policies import parse_policy
from condbench.policy_group import PolicyGroup, tile_conditions
from condbench.registry import model_entry
from condbench.runner import RunOptions, run_suite
from condbench.seeding import PairedNoise

from .test_runner import small_suite

MODELS = ["dit-digits", "xmdpt-digits", "mdsgen-shapes", "dit-xl-2", "mdt-xl-2", "sit-xl-2", "repa-sit-xl-2",
          "mg-sit-xl-2", "lightningdit-xl-1", "uvit-h-2", "xmdpt-s-2", "mdsgen-b-2", "sd3-medium"]


def _policies(adapter) -> list:
    d = adapter.embed_dim
    return [parse_policy(s) for s in ("baseline", f"topk:{d // 3}", f"random-like:topk:{d // 3}",
                                      f"topk:{d // 2},branch=cond", "drop-t@last:2", "drop-cond@t0")]


@pytest.mark.parametrize("name", MODELS)
def test_policies_together_give_each_policy_its_samples_alone_bit_for_bit(name):
    case = model_entry(name).contract_case()
    adapter, conditions = case.adapter, case.conditions
    if adapter.planned_evaluations() is None:
        pytest.skip(f"{name}'s default sampler is adaptive: the runner samples its policies one at a time")
    exact = hasattr(adapter, "microbatch")  # SD3 evaluates whole batches: equal within rounding
    if exact:
        adapter.microbatch = 4
    n = len(conditions)
    policies = _policies(adapter)
    alone = [adapter.sample(conditions, PairedNoise(3, range(n)), p) for p in policies]
    together = adapter.sample(tile_conditions(conditions, len(policies)),
                              PairedNoise(3, list(range(n)) * len(policies)), PolicyGroup(tuple(policies), n))
    assert len(together.trace) == len(policies)
    for i, (policy, single) in enumerate(zip(policies, alone)):
        block = together.samples[i * n:(i + 1) * n]
        if exact:
            assert torch.equal(block, single.samples), policy.canonical()
        else:
            torch.testing.assert_close(block, single.samples, rtol=0, atol=1e-5 * float(single.samples.abs().max()))
        assert together.trace[i].to_dict() == single.trace.to_dict(), policy.canonical()
    assert not torch.equal(alone[0].samples, alone[1].samples)  # the policies do differ: the check can fail


def test_a_batch_that_is_not_one_row_per_sample_and_branch_is_refused_by_name():
    group = PolicyGroup((parse_policy("baseline"), parse_policy("tail:0.1")), 3)
    with pytest.raises(ValueError, match=r"not one row per sample and branch.*together: 1"):
        group.sample_of_row(torch.tensor([0, 0, 0, 0, 0, 0, 1, 1]), 8)
    assert group.sample_of_row(torch.tensor([0] * 6 + [1] * 6), 12).tolist() == list(range(6)) * 2


def test_conditions_are_tiled_per_kind_and_an_unknown_kind_is_named():
    assert tile_conditions(torch.tensor([1, 2]), 3).tolist() == [1, 2] * 3
    assert tile_conditions(["a", "b"], 2) == ["a", "b", "a", "b"]
    tiled = tile_conditions({"x": torch.ones(2, 4)}, 3)
    assert tiled["x"].shape == (6, 4)
    with pytest.raises(TypeError, match="cannot repeat conditions of type object"):
        tile_conditions(object(), 2)


def _run(out, together, policies=None, cache=None, microbatch=4):
    suite = small_suite(policies=policies) if policies else small_suite()
    suite.microbatch = microbatch  # bit-identical rows whatever the batch (a cache-key part: set for both runs)
    return json.loads(run_suite(suite, out, RunOptions(log=lambda _: None, together=together,
                                                       cache_dir=cache)).read_text())


def _same_records(a: dict, b: dict, work: bool = True) -> None:
    for ra, rb in zip(a["records"], b["records"], strict=True):
        assert ra["policy"] == rb["policy"]
        assert ra["metrics"] == rb["metrics"] and ra["paired_vs_baseline"] == rb["paired_vs_baseline"]
        assert ra["trace"] == rb["trace"]
        assert not work or ra["work"]["denoiser_evaluations"] == rb["work"]["denoiser_evaluations"]


def test_the_runner_gives_the_same_cache_and_records_with_policies_together(tmp_path):
    alone = _run(tmp_path / "alone", 1)
    for together in ("all", 3):
        run = _run(tmp_path / f"together{together}", together)
        _same_records(alone, run)
        assert [r["config"]["policies_together"] for r in run["records"]] == [4 if together == "all" else 3] * 4
        assert all(r["work"]["shards_from_cache"] == 0 for r in run["records"])
        for cache in (tmp_path / f"together{together}" / "cache").glob("??/*.npz"):  # every shard and state file
            with np.load(cache) as ours, np.load(tmp_path / "alone" / "cache" / cache.parent.name / cache.name) as theirs:
                for key in ours.files:
                    assert np.array_equal(ours[key], theirs[key]), (cache.name, key)
        with np.load(tmp_path / "alone" / "samples_grid.npz") as a, np.load(tmp_path / f"together{together}" / "samples_grid.npz") as b:
            assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)


def test_without_a_microbatch_the_runner_is_equal_within_rounding(tmp_path):
    alone, together = _run(tmp_path / "a", 1, microbatch=None), _run(tmp_path / "b", "all", microbatch=None)
    for a, b in zip(alone["records"], together["records"], strict=True):
        assert a["trace"] == b["trace"]
        for key, value in a["metrics"].items():
            assert b["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-6), (a["policy"], key)


def test_policies_together_resume_from_a_partial_cache(tmp_path):
    cache = tmp_path / "cache"
    _run(tmp_path / "first", "all", policies=["baseline", "tail:0.05"], cache=cache)
    resumed = _run(tmp_path / "second", "all", cache=cache)
    work = {r["policy"]: r["work"]["shards_from_cache"] for r in resumed["records"]}
    assert work == {"baseline": 2, "tail:0.05": 2, "random-like:tail:0.05": 0, "drop-cond@last:3": 0}
    _same_records(_run(tmp_path / "alone", 1), resumed, work=False)  # the resumed run sampled only two cells


def test_the_cli_refuses_a_together_that_is_not_all_or_a_positive_count(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["run", "quickstart", "--together", "0"])
    assert stop.value.code == 2
    assert "expected 'all' or a positive number of policies, got '0'" in capsys.readouterr().err
