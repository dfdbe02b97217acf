"""A real (small) run of the digits task end to end, and its failure modes."""
import contextlib
import json
from typing import Iterator

import pytest
import torch

from condbench.adapters.dit import DiTAdapter
from condbench.registry import MODELS, ModelEntry, register_model
from condbench.reports.html import build_report
from condbench.runner import NonFiniteSamplesError, RunOptions, run_suite
from condbench.suites import Suite, load_suite
from condbench.tasks.digits import DIGITS_DIT_CONFIG

from .conftest import random_dit

POLICIES = ["baseline", "tail:0.05", "random-like:tail:0.05", "drop-cond@last:3"]


def small_suite(models=("dit-digits",), policies=POLICIES):
    return Suite(name="small", task="digits", models=list(models), policies=list(policies), seed=0, batch_size=7,
                 shard_size=10,
                 task_options={"samples_per_class": 2}, model_options={m: {"num_steps": 6} for m in models},
                 analysis={"sweep_points": 3}, bootstrap=50)


def test_run_writes_every_policy_with_paired_deltas_and_a_page(tmp_path):
    results = json.loads(run_suite(small_suite(), tmp_path, RunOptions(log=lambda _: None)).read_text())
    assert [r["policy"] for r in results["records"]] == POLICIES
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["policy"] for line in lines] == POLICIES
    for record in results["records"]:
        assert set(record["metrics"]) == {"fid", "is", "class_fidelity"}
        assert record["num_samples"] == 20 and record["protocol"]
    baseline, tail, control, _ = results["records"]
    assert baseline["paired_vs_baseline"] == {} and baseline["dims_removed"] == 0
    assert set(tail["paired_vs_baseline"]) == {"fid", "is", "class_fidelity"}
    for key, change in tail["paired_vs_baseline"].items():
        assert change["delta"] == pytest.approx(tail["metrics"][key] - baseline["metrics"][key])
    assert control["dims_removed"] == pytest.approx(tail["dims_removed"])  # the matched control
    assert results["analysis"]["dit-digits"]["c"]["dim"] == DIGITS_DIT_CONFIG.hidden_size
    assert results["models"]["dit-digits"]["checkpoint"]["sha256"]
    for record in results["records"]:  # the arithmetic is on every record (TF32 moves GPU numbers)
        assert record["environment"]["precision"]["tf32_matmul"] == torch.backends.cuda.matmul.allow_tf32
    page = build_report([tmp_path], tmp_path / "index.html").read_text()
    assert all(p in page for p in ("tail:0.05", "random-like:tail:0.05", "drop-cond@last:3", "data:image/png;base64"))


@contextlib.contextmanager
def nan_model_registered() -> Iterator[str]:
    """``broken-digits``: a digits DiT whose output has a NaN channel, registered while the block runs."""
    def broken(ckpt=None, device="cpu", **sampler):
        model = random_dit(DIGITS_DIT_CONFIG)
        with torch.no_grad():
            model.final_layer.linear.bias[0] = float("nan")
        return DiTAdapter(model, "broken", **{"cfg_channels": None, **sampler})

    register_model(ModelEntry("broken-digits", "digits", 96, "ddpm", "test", broken, 6, 1.5))
    try:
        yield "broken-digits"
    finally:
        MODELS.pop("broken-digits")


def test_nan_samples_stop_the_run_with_a_clear_error_and_keep_finished_cells(tmp_path):
    with nan_model_registered() as broken, pytest.raises(NonFiniteSamplesError,
                                                         match=r"NaN or infinite \(first: index 0\)"):
        run_suite(small_suite(models=("dit-digits", broken)), tmp_path, RunOptions(log=lambda _: None))
    kept = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["model"] for r in kept] == ["dit-digits"] * len(POLICIES)


def test_suites_validate_before_any_work(tmp_path):
    assert "quickstart" in load_suite("quickstart").name
    with pytest.raises(ValueError, match="baseline"):
        small_suite(policies=["tail:0.1"])
    with pytest.raises(ValueError, match="same policy is listed twice"):
        small_suite(policies=["baseline", "tail:0.1", "tail:0.10"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntask: digits\nmodels: [dit-digits]\npolicies: [baseline, tial:1]\n")
    with pytest.raises(ValueError, match="unknown action 'tial'"):
        load_suite(str(bad))
    with pytest.raises(FileNotFoundError, match="built-in suites are"):
        load_suite("no-such-suite")


def test_tf32_settings_are_recorded():
    from condbench.runner import environment

    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, False  # both off their defaults
    try:
        precision = environment()["precision"]
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    assert precision["tf32_matmul"] is True and precision["tf32_cudnn"] is False and precision["dtype"] == "float32"
