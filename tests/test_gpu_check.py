"""``benchmarks/gpu_check.py``: DiT's official loop as written out there, and its ``--small`` run on the CPU.

The official loop is the baseline every GPU ratio divides by, so it must be DiT's sampler: fed condbench's paired
noise, it ends where condbench's DDPM sampler (itself equal to the official code's fixture) ends. The ``--small``
run must write finite, positive numbers in the schema that ``condbench run --dry-run --throughput`` reads.
Timings are never asserted.
"""
import dataclasses
import importlib
import json
import math
from pathlib import Path

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.cli import main as cli_main
from condbench.plan import read_throughput
from condbench.seeding import PairedNoise

from .conftest import TINY, assert_matches_official, random_dit

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def gpu_check():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))  # gpu_check imports gpu_sampling beside it, as when run as a script
        yield importlib.import_module("gpu_check")


def test_official_loop_ends_where_condbenchs_ddpm_sampler_ends(gpu_check):
    model = random_dit(dataclasses.replace(TINY, num_classes=1000))  # sample_ddp.py's null class is 1000
    labels, steps, shape = torch.tensor([3, 999]), 4, (4, 8, 8)
    ours = DiTAdapter(model, num_steps=steps, cfg_scale=1.5, cfg_channels=3).sample(
        labels, PairedNoise(7, range(2))).samples
    noise = PairedNoise(7, range(2))  # the same streams: the initial latents, then one draw per step

    def step_noise(x: torch.Tensor) -> torch.Tensor:  # (2N, ...): the null half's noise is never read back
        return torch.cat([noise.draw(shape), torch.zeros(len(x) // 2, *shape)])

    official = gpu_check.official_dit_sample(model, noise.draw(shape), labels, steps, 1.5, step_noise)
    assert ours.abs().max() > 0.1  # a non-trivial trajectory
    assert_matches_official(ours, official)


def numbers(value, path=""):
    """Every number in a JSON value, with where it is (booleans are not numbers here)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from numbers(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numbers(item, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


@pytest.mark.slow
def test_small_run_writes_the_report_that_the_dry_run_projects_from(gpu_check, tmp_path, capsys):
    out, md = tmp_path / "gpu_check.json", tmp_path / "gpu_check.md"
    assert gpu_check.main(["--small", "--budget-s", "3000", "--out", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    assert report["small"] and report["device_type"] == "cpu" and report["weights"].startswith("random")
    assert {(r["model"], r["precision"], r["compile"]) for r in report["results"]} == {
        (m, p, False) for m in ("dit-xl-2", "repa-sit-xl-2") for p in ("fp32", "tf32", "bf16")}
    assert [(r["model"], r["precision"]) for r in report["official"]] == [("dit-xl-2", "fp32"), ("dit-xl-2", "tf32")]
    assert report["skipped"] == ["bf16+compile (--no-compile; --small leaves it out)"]
    found = list(numbers(report))
    assert all(math.isfinite(v) and v >= 0 for _, v in found), [p for p, v in found if not v >= 0]
    rates = [(p, v) for p, v in found if p.endswith(("_per_s", "gflop_per_row", "peak_memory_mb", "speedup"))
             or ".fraction" in p or p.endswith("sampling_hours")]
    assert len(rates) > 40 and all(v > 0 for _, v in rates), [p for p, v in rates if v <= 0]

    official = {r["precision"]: r["sampler_rows_per_s"] for r in report["official"]}
    for r in report["results"]:  # each DiT row over the official loop; REPA has no official loop written out
        expected = r["sampler_rows_per_s"] / official["fp32"] if r["model"] == "dit-xl-2" else None
        assert r["x_official_fp32"] == expected
        assert r["samples_per_s_full_steps"] == pytest.approx(r["sampler_rows_per_s"] / r["rows_per_sample_full"])
    e2e = report["end_to_end"]
    assert e2e["full_sampler_steps"] == 250 and e2e["batches"] == 2 and e2e["samples_per_batch"] == 2
    (together,) = report["together"]  # the imagenet suite's policies, in one call and one call each
    assert together["suite"] == "imagenet" and together["policies"] == len(together["policy_specs"]) == 15

    projection = report["projection"]
    assert projection["model"] == "repa-sit-xl-2" and projection["cells"] == 15
    assert "projected sampling time" in projection["dry_run"] and "SMALL networks" in projection["dry_run"]
    assert len(report["targets"]) == 5 and all(t["met"] in (True, False) for t in report["targets"][1:])
    table = md.read_text()
    assert table.count("| dit-xl-2 |") == 3 and "official loop | tf32" in table and "| target |" in table

    assert set(read_throughput(out, "bf16", False).rows_per_s) == {"dit-xl-2", "repa-sit-xl-2"}
    capsys.readouterr()
    assert cli_main(["run", "imagenet", "--dry-run", "--models", "repa-sit-xl-2", "--precision", "bf16",
                     "--throughput", str(out)]) == 0
    assert "projected sampling time" in capsys.readouterr().out


def test_a_failed_measurement_is_listed_and_the_run_goes_on(gpu_check):
    report = {"skipped": []}
    assert gpu_check.attempt(report, "dit-xl-2 bf16+compile", lambda: 1 / 0) is None
    assert report["skipped"] == ["dit-xl-2 bf16+compile (failed: ZeroDivisionError: division by zero)"]
    assert gpu_check.attempt(report, "fine", lambda: {"rows_per_s": 1.0}) == {"rows_per_s": 1.0}


def test_a_run_past_its_budget_still_writes_both_files(gpu_check, tmp_path):
    out, md = tmp_path / "gpu_check.json", tmp_path / "gpu_check.md"
    assert gpu_check.main(["--small", "--budget-s", "0", "--out", str(out), "--markdown", str(md)]) == 0
    report = json.loads(out.read_text())
    assert report["results"] == [] and report["end_to_end"] is None and report["projection"] is None
    assert len(report["skipped"]) == 11 and report["skipped"][0] == "dit-xl-2 fp32 (over the 0 s budget)"
    assert all(t["met"] is None for t in report["targets"]) and "Not measured: dit-xl-2 fp32" in md.read_text()
