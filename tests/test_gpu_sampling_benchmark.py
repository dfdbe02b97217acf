"""``benchmarks/gpu_sampling.py`` on the CPU with tiny networks, and ``run --dry-run --throughput`` reading its JSON.

Timings are never asserted; what is checked is that the FLOPs come from the counter and include attention (equal
to a count by hand of DiT's matrix products), and that the projection divides each cell's planned network rows by
the measured rate.
"""
import importlib.util
import json
from pathlib import Path

import pytest

from condbench.cli import main

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_sampling.py"


@pytest.fixture(scope="module")
def benchmark_module():
    spec = importlib.util.spec_from_file_location("gpu_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dit_flops_by_hand(input_size=8, patch=2, channels=4, hidden=128, depth=2, mlp_ratio=4, out_channels=8, freq=256):
    """Multiply-adds x 2 of one DiT row: patchify, timestep MLP, per block qkv/attention/proj/MLP/adaLN, final layer."""
    tokens, d = (input_size // patch) ** 2, hidden
    macs = tokens * d * channels * patch * patch + freq * d + d * d  # x_embedder, t_embedder
    block = tokens * (3 * d * d + d * d + 2 * mlp_ratio * d * d) + 2 * tokens * tokens * d + 6 * d * d
    macs += depth * block + 2 * d * d + tokens * d * patch * patch * out_channels  # final adaLN and linear
    return 2 * macs


def test_small_cpu_run_writes_every_number(benchmark_module, tmp_path):
    out = tmp_path / "bench.json"
    assert benchmark_module.main(["--small", "--device", "cpu", "--models", "dit-xl-2", "--batch", "2", "--steps", "2",
                                  "--repeats", "1", "--together", "3", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["small"] and report["device_type"] == "cpu" and report["bf16_peak_tflops"] is None
    rows = {r["precision"]: r for r in report["results"]}
    assert set(rows) == {"fp32", "tf32", "bf16"}
    for r in rows.values():
        assert r["gflop_per_row"] * 1e9 == dit_flops_by_hand()  # attention included, no hand formula in the script
        assert r["rows_per_s"] > 0 and r["samples_per_s"] > 0 and r["mfu_vs_bf16_peak"] is None
        assert r["sampler_steps"] == 2 and r["peak_memory_mb"] > 0
        assert r["rows_per_sample_full"] == 500  # DiT's own sampler: 250 steps, both guidance branches at each
        assert r["samples_per_s_full_steps"] == r["sampler_rows_per_s"] / 500
    (together,) = report["together"]  # 3 policies in one call against one call each
    assert together["policies"] == 3 and together["samples_per_policy"] == 1
    assert together["policy_specs"] == ["baseline", "topk:32", "topk:64"]  # spread over c's 128 dimensions
    assert together["samples_per_s_alone"] > 0 and together["samples_per_s_together"] > 0


def test_dry_run_projects_each_cell_from_the_measured_rate(tmp_path, capsys):
    measured = {"device": "test rate", "date": "today", "small": False,
                "results": [{"model": "repa-sit-xl-2", "precision": "bf16", "compile": False, "batch_rows": 256,
                             "sampler_rows_per_s": 100.0},
                            {"model": "repa-sit-xl-2", "precision": "fp32", "compile": False, "batch_rows": 256,
                             "sampler_rows_per_s": 10.0}]}
    path = tmp_path / "rate.json"
    path.write_text(json.dumps(measured))
    args = ["run", "imagenet", "--dry-run", "--models", "repa-sit-xl-2", "--policies", "baseline",
            "--throughput", str(path)]
    assert main([*args, "--precision", "bf16"]) == 0
    printed = capsys.readouterr().out
    baseline = next(line for line in printed.splitlines() if " baseline " in line)
    planned = int(baseline.split()[-3].replace(",", ""))
    assert baseline.split()[-2:] == [f"{planned / 100 / 3600:.2f}", "h"]
    assert "projected sampling time" in printed and "test rate (today), bf16" in printed
    assert main([*args, "--precision", "tf32"]) == 2  # no measurement at that precision: a clear error
    assert "no measurement at precision tf32" in capsys.readouterr().err
