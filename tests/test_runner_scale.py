"""The runner at scale, on the digits task: cache and resume, prefix sharing, concurrent runs on one cache,
torchrun with 2 gloo processes, batch-size invariance and the dry-run plan."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import condbench
from condbench.adapters.base import PolicyTrace
from condbench.cache import ShardCache, cache_key
from condbench.cli import main
from condbench.runner import MissingShardsError, RunOptions, run_suite
from condbench.seeding import PairedNoise
from condbench.suites import Suite, load_suite

from .conftest import random_dit

QUIET = dict(log=lambda _: None)


def suite(policies=("baseline", "tail:0.05"), per_class=3, steps=6, shard_size=10, batch_size=10, **extra):
    return Suite(name="scale", task="digits", models=["dit-digits"], policies=list(policies), seed=0,
                 batch_size=batch_size, shard_size=shard_size, task_options={"samples_per_class": per_class},
                 model_options={"dit-digits": {"num_steps": steps, **extra}}, analysis={"sweep_points": 2},
                 bootstrap=20)


def records(path: Path) -> dict[str, dict]:
    return {r["policy"]: r for r in json.loads((path / "results.json").read_text())["records"]}


def write_suite(path: Path, s: Suite) -> Path:
    data = {k: v for k, v in s.__dict__.items()}
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_second_run_takes_every_shard_from_the_cache(tmp_path):
    first = records(run_suite(suite(), tmp_path, RunOptions(**QUIET)).parent)
    second = records(run_suite(suite(), tmp_path, RunOptions(**QUIET)).parent)
    for policy, record in first.items():
        assert record["work"]["denoiser_evaluations"] == 30 * 6 * 2  # 30 samples, 6 steps, both CFG branches
        assert second[policy]["work"] == {"shards": 3, "shards_from_cache": 3, "denoiser_evaluations": 0,
                                          "processes": 1}
        assert second[policy]["metrics"] == record["metrics"]


def test_score_recomputes_from_the_cache_and_refuses_missing_shards(tmp_path):
    run_suite(suite(), tmp_path / "run", RunOptions(**QUIET))
    rescored = records(run_suite(suite(), tmp_path / "run", RunOptions(score_only=True, **QUIET)).parent)
    assert rescored["tail:0.05"]["work"]["denoiser_evaluations"] == 0
    with pytest.raises(MissingShardsError, match="never sampled"):
        run_suite(suite(policies=("baseline", "head:0.5")), tmp_path / "run", RunOptions(score_only=True, **QUIET))


def test_cache_key_covers_checkpoint_policy_seed_and_range(tmp_path):
    base = dict(kind="cell", adapter={"checkpoint": {"sha256": "a"}}, policy="tail:0.05", seed=0, start=0, stop=10)
    key = cache_key(**base)
    for change in ({"adapter": {"checkpoint": {"sha256": "b"}}}, {"policy": "tail:0.06"}, {"seed": 1}, {"stop": 11}):
        assert cache_key(**{**base, **change}) != key
    # and for real: another checkpoint file reuses nothing
    path = tmp_path / "other.safetensors"
    from condbench.checkpoints import save_safetensors
    from condbench.tasks.digits import DIGITS_DIT_CONFIG

    save_safetensors(random_dit(DIGITS_DIT_CONFIG, std=0.02).state_dict(), path, {})
    run_suite(suite(), tmp_path / "a", RunOptions(cache_dir=tmp_path / "cache", **QUIET))
    other = suite()
    other.model_options["dit-digits"]["ckpt"] = str(path)
    again = records(run_suite(other, tmp_path / "b", RunOptions(cache_dir=tmp_path / "cache", **QUIET)).parent)
    assert all(r["work"]["shards_from_cache"] == 0 for r in again.values())


def test_late_policies_continue_from_the_baselines_states(tmp_path):
    shared = records(run_suite(suite(("baseline", "tail:0.05@last:2")), tmp_path / "shared", RunOptions(**QUIET)).parent)
    alone = records(run_suite(suite(("tail:0.05@last:2", "baseline")), tmp_path / "alone",
                              RunOptions(policies=["tail:0.05@last:2"], **QUIET)).parent)
    late = shared["tail:0.05@last:2"]
    assert late["config"]["shared_prefix_steps"] == 4
    assert late["work"]["denoiser_evaluations"] == 30 * 2 * 2  # only the last 2 of 6 steps were computed
    assert alone["tail:0.05@last:2"]["work"]["denoiser_evaluations"] == 30 * 6 * 2
    assert late["metrics"] == alone["tail:0.05@last:2"]["metrics"]
    assert late["trace"]["active_steps"] == [4, 5]


def test_noise_is_per_index_and_samples_do_not_depend_on_the_batch_size():
    adapter = condbench.load_adapter("dit-digits", num_steps=6)
    y = torch.arange(10).repeat(7)
    big = adapter.sample(y, PairedNoise(0, range(70))).samples
    small = torch.cat([adapter.sample(y[i:i + 7], PairedNoise(0, range(i, i + 7))).samples for i in range(0, 70, 7)])
    assert torch.equal(PairedNoise(0, range(70)).draw((1, 8, 8))[63:],
                       PairedNoise(0, range(63, 70)).draw((1, 8, 8)))
    # CPU matrix products may round differently for another number of rows: equal to float32 rounding
    assert torch.allclose(big, small, atol=1e-5, rtol=0), (big - small).abs().max()


@pytest.mark.parametrize("spec", ["baseline", "tail:0.05", "random-like:tail:0.05,branch=cond"])
def test_with_a_microbatch_samples_are_bit_identical_for_batch_sizes_7_and_64(spec):
    adapter = condbench.load_adapter("dit-digits", num_steps=4, microbatch=8)
    policy = condbench.parse_policy(spec)
    y = torch.arange(10).repeat(7)[:64]
    whole = adapter.sample(y, PairedNoise(0, range(64)), policy)
    parts = [adapter.sample(y[i:i + 7], PairedNoise(0, range(i, min(i + 7, 64))), policy) for i in range(0, 64, 7)]
    assert torch.equal(whole.samples, torch.cat([p.samples for p in parts]))
    merged = PolicyTrace.merge([p.trace for p in parts], [len(p.samples) for p in parts])
    assert merged.removed_per_step == pytest.approx(whole.trace.removed_per_step, rel=1e-12)
    assert adapter.describe()["sampler"]["microbatch"] == 8


def test_runs_with_batch_sizes_7_and_64_give_identical_features_and_metrics(tmp_path):
    def run(batch_size: int) -> tuple[dict, list]:
        s = suite(per_class=7, shard_size=70, batch_size=batch_size)
        s.microbatch = 8
        path = run_suite(s, tmp_path / str(batch_size), RunOptions(**QUIET))
        shards = sorted((tmp_path / str(batch_size) / "cache").glob("*/*.npz"))
        return records(path.parent), [np.load(f)["features"] for f in shards if "features" in np.load(f)]

    small, small_features = run(7)
    big, big_features = run(64)
    assert len(small_features) == len(big_features) == 2  # one shard per policy
    assert all(np.array_equal(a, b) for a, b in zip(small_features, big_features))
    for policy in small:
        assert small[policy]["metrics"] == big[policy]["metrics"]
        assert small[policy]["config"]["sampler"]["microbatch"] == 8


def _cli(args, cwd, env=None):
    return subprocess.Popen([sys.executable, "-m", "condbench", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "CONDBENCH_NO_PROGRESS": "1", **(env or {})})


def test_a_run_killed_mid_cell_resumes_without_recomputing_finished_shards(tmp_path):
    s = suite(per_class=10, steps=30, shard_size=10)  # 10 shards per cell
    path = write_suite(tmp_path / "s.yaml", s)
    reference = records(run_suite(s, tmp_path / "reference", RunOptions(**QUIET)).parent)
    cache = tmp_path / "killed" / "cache"
    process = _cli(["run", str(path), "-o", str(tmp_path / "killed")], tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(cache.glob("*/*.npz"))) < 13:  # the baseline and 3 shards more
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(list(cache.glob("*/*.npz")))
    assert 13 <= finished < 20, f"kill came too late ({finished} shards finished)"
    resumed = records(run_suite(s, tmp_path / "killed", RunOptions(**QUIET)).parent)
    work = resumed["tail:0.05"]["work"]
    assert work["shards_from_cache"] == finished - 10
    assert work["denoiser_evaluations"] == (20 - finished) * 10 * 30 * 2
    assert resumed["baseline"]["work"]["denoiser_evaluations"] == 0
    for policy in reference:
        assert resumed[policy]["metrics"] == reference[policy]["metrics"]


def test_two_runs_on_one_cache_neither_corrupt_it_nor_duplicate_work(tmp_path):
    s = suite(per_class=6, steps=10, shard_size=5)
    path = write_suite(tmp_path / "s.yaml", s)
    runs = [_cli(["run", str(path), "-o", str(tmp_path / f"run{i}"), "--cache", str(tmp_path / "cache")], tmp_path)
            for i in range(2)]
    for p in runs:
        output = p.communicate(timeout=600)[0]
        assert p.returncode == 0, output
    both = [records(tmp_path / f"run{i}") for i in range(2)]
    reference = records(run_suite(s, tmp_path / "alone", RunOptions(**QUIET)).parent)
    for policy, record in reference.items():
        total = sum(b[policy]["work"]["denoiser_evaluations"] for b in both)
        assert total == record["work"]["denoiser_evaluations"]  # every shard computed exactly once
        assert both[0][policy]["metrics"] == both[1][policy]["metrics"] == record["metrics"]
    cache = ShardCache(tmp_path / "cache")
    assert all(cache.get(p.stem) is not None for p in (tmp_path / "cache").glob("*/*.npz"))


def test_torchrun_with_two_gloo_processes_gives_the_numbers_of_one(tmp_path):
    s = suite(per_class=3, steps=6, shard_size=7)  # 30 samples in shards of 7: uneven across 2 ranks
    path = write_suite(tmp_path / "s.yaml", s)
    # torchrun gives each process one CPU thread; the single process gets the same (a CPU matrix product
    # sums in another order with another thread count)
    single = _cli(["run", str(path), "-o", str(tmp_path / "one"), "--cache", str(tmp_path / "c1"), "--device", "cpu"],
                  tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert single.wait(timeout=600) == 0, single.communicate()[0][-3000:]
    one = records(tmp_path / "one")
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29731",
                          "-m", "condbench", "run", str(path), "-o", str(tmp_path / "two"), "--cache",
                          str(tmp_path / "c2"), "--device", "cpu"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "CONDBENCH_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    two = records(tmp_path / "two")
    for policy, record in one.items():
        assert two[policy]["metrics"] == record["metrics"]
        assert two[policy]["work"]["processes"] == 2 and two[policy]["num_samples"] == 30
    c1, c2 = ShardCache(tmp_path / "c1"), ShardCache(tmp_path / "c2")
    keys = sorted(p.stem for p in (tmp_path / "c1").glob("*/*.npz"))
    assert keys == sorted(p.stem for p in (tmp_path / "c2").glob("*/*.npz"))
    for key in keys:
        a, b = c1.get(key), c2.get(key)
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_dry_run_of_the_table2_grid_saves_at_least_30_percent(capsys):
    assert main(["run", "table2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    planned, scratch = (int(x.replace(",", "")) for x in
                        __import__("re").search(r"([\d,]+) denoiser evaluations planned, ([\d,]+) from scratch", out).groups())
    assert planned <= 0.7 * scratch
    assert len(load_suite("table2").policies) == out.count("dit-digits")


def test_kept_samples_are_written_as_the_adm_evaluator_npz(tmp_path):
    run_suite(suite(), tmp_path, RunOptions(**QUIET))  # without samples first
    s = suite()
    s.keep_samples = True
    kept = records(run_suite(s, tmp_path, RunOptions(**QUIET)).parent)
    assert kept["baseline"]["work"]["denoiser_evaluations"] > 0  # cached shards lacked the samples
    npz = np.load(kept["baseline"]["samples_npz"])
    assert npz["arr_0"].dtype == np.uint8 and npz["arr_0"].shape == (30, 8, 8, 1)
    assert np.array_equal(npz["labels"], np.tile(np.arange(10), 3))
    adapter = condbench.load_adapter("dit-digits", num_steps=6)
    images = adapter.decode(adapter.sample(torch.arange(10), PairedNoise(0, range(10))).samples)
    expected = (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.abs(npz["arr_0"][:10].astype(int) - expected.astype(int)).max() <= 1  # batch 10 vs 30: rounding
    again = records(run_suite(s, tmp_path, RunOptions(**QUIET)).parent)
    assert again["tail:0.05"]["work"]["denoiser_evaluations"] == 0
