"""export-pruned: the digits DiT without the adaLN input columns a mask=fixed policy removes at every step."""
from __future__ import annotations

import json

import pytest
import torch

import condbench
from condbench.cli import main
from condbench.policies import parse_policy
from condbench.pruning import SelectedLinear, load_pruned, static_mask
from condbench.seeding import PairedNoise

POLICY = "tail:0.1,mask=fixed"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned")
    assert main(["export-pruned", "dit-digits", "--policy", POLICY, "-o", str(out)]) == 0
    return out


def test_the_pruned_checkpoint_loads_and_reproduces_the_masked_c_samples(exported):
    full = condbench.load_adapter("dit-digits", num_steps=50)
    dropped, per_step = static_mask(full, parse_policy(POLICY))
    pruned = load_pruned(exported)
    assert isinstance(pruned.model.blocks[0].adaLN_modulation[1], SelectedLinear)
    assert pruned.model.blocks[0].adaLN_modulation[1].in_features == 96 - int(dropped.sum()) < 96
    labels = torch.arange(10)
    masked = full.sample(labels, PairedNoise(0, range(10)), _ConstantMask(dropped)).samples
    ours = pruned.sample(labels, PairedNoise(0, range(10))).samples
    assert torch.allclose(ours, masked, atol=1e-5), (ours - masked).abs().max()
    assert not torch.allclose(ours, full.sample(labels, PairedNoise(0, range(10))).samples, atol=1e-3)
    assert pruned.describe()["checkpoint"]["pruned"] == POLICY


class _ConstantMask(condbench.Policy):
    """The masked-c model: c with the exported dimensions zeroed at every step (a hook, not a spec)."""

    def __new__(cls, dropped):
        policy = object.__new__(cls)
        object.__setattr__(policy, "_dropped", dropped)
        return policy

    def __init__(self, dropped):
        base = parse_policy("tail:0")
        for key in ("spec", "action", "schedule", "mask", "branch", "seed"):
            object.__setattr__(self, key, getattr(base, key))

    def apply(self, c, t_part, cond_part, **kwargs):
        result = super().apply(c, t_part, cond_part, **kwargs)
        return type(result)(torch.where(self._dropped.to(c.device), torch.zeros_like(c), c), result.removed, result.rows)


def test_the_savings_are_counted_from_the_layers(exported):
    savings = json.loads((exported / "savings.json").read_text())
    dropped, readers = savings["dims_dropped"], savings["readers"]
    assert readers == 5  # 4 blocks and the final layer
    out_features = 4 * 6 * 96 + 2 * 96
    assert savings["params"]["saved"] == out_features * dropped
    assert savings["bytes"]["saved"] == 4 * out_features * dropped - 8 * (96 - dropped) * readers  # float32; int64 kept
    assert savings["flops"]["saved_per_evaluation"] == 2 * out_features * dropped
    assert savings["flops"]["saved_per_sample"] == 2 * out_features * dropped * 100  # 50 steps x 2 branches
    assert savings["exact_for_policy"] is False and savings["dims_removed_per_step_mean"] > dropped


def test_export_pruned_refuses_a_per_sample_or_scheduled_policy(tmp_path, capsys):
    for spec in ("tail:0.1", "tail:0.1@t0,mask=fixed"):
        assert main(["export-pruned", "dit-digits", "--policy", spec, "-o", str(tmp_path / "x")]) == 2
        assert "mask=fixed acting at every step" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_report_shows_the_savings_of_checkpoints_exported_under_a_run(tmp_path, exported):
    import shutil

    from condbench.reports.html import build_report
    from condbench.runner import RunOptions, run_suite
    from condbench.suites import Suite

    run = tmp_path / "run"
    run_suite(Suite(name="s", task="digits", models=["dit-digits"], policies=["baseline"], seed=0, batch_size=10,
                    shard_size=10, task_options={"samples_per_class": 1}, model_options={"dit-digits": {"num_steps": 2}},
                    analysis={"sweep_points": 2}, bootstrap=5), run, RunOptions(log=lambda _: None))
    shutil.copytree(exported, run / "pruned" / "tail_0.1")
    page = build_report([run], tmp_path / "report.html").read_text()
    savings = json.loads((exported / "savings.json").read_text())
    assert "Weight savings" in page and POLICY in page and f"{savings['params']['saved']:,}" in page
