"""The built-in paired task pose-digits: its pairs, the shipped tiny X-MDPT (it learned the task), and the whole
continuous-condition path through the runner and the report, offline."""
import json

import numpy as np
import pytest
import torch

from condbench.datasets.digit_pairs import DigitPairs, pose_map
from condbench.tasks.pose_digits import PoseDigitsTask


def test_pairs_are_fixed_per_seed_and_index_with_a_same_class_source_and_a_pose_from_the_target_only():
    first, again, other_seed = DigitPairs("test", seed=0), DigitPairs("test", seed=0), DigitPairs("test", seed=1)
    assert len(first) == 359 and len(DigitPairs("train")) == 1438
    assert not set(first.members) & set(DigitPairs("train").members)  # the split is a partition
    pairs = [first.pair(i) for i in range(len(first))]
    assert pairs == [again.pair(i) for i in range(len(first))]
    for p in pairs:
        assert p.source != p.target and first.labels[p.source] == first.labels[p.target] == p.label
        assert p.source in first.members  # from the same split
    assert sum(p.source != other_seed.pair(p.index).source for p in pairs) > 300  # the seed picks the source
    batch = first.tensors(range(5, 9))
    assert batch["target"].shape == batch["source"].shape == batch["pose"].shape == (4, 1, 8, 8)
    assert torch.equal(batch["pose"], pose_map(batch["target"]))  # from the target alone
    assert set(batch["pose"].unique().tolist()) == {0.0, 1.0}
    ink = batch["target"] > -1 + 2 * 5.5 / 16  # intensities 6..16 of 16
    assert torch.equal(batch["pose"].bool(), ink)
    # stroke intensity does not reach the pose: a faded target (same ink) gives the same map
    faded = torch.where(ink, torch.full_like(batch["target"], -1 + 2 * 7 / 16), torch.full_like(batch["target"], -1))
    assert torch.equal(pose_map(faded), batch["pose"])
    with pytest.raises(IndexError, match="pair 359 of the test split, which has 359 pairs"):
        first.pair(359)
    with pytest.raises(ValueError, match="num_pairs 400: the test split has 359 pairs"):
        PoseDigitsTask(num_pairs=400)


@pytest.fixture(scope="module")
def shipped():
    """The shipped xmdpt-digits with 10 DDIM steps, on the first 24 test pairs."""
    from condbench.registry import load_adapter

    task = PoseDigitsTask(num_pairs=24)
    adapter = load_adapter("xmdpt-digits", num_steps=10)
    task.prepare_adapter(adapter)
    return task, adapter


def _psnr_ssim(task, adapter, cond, policy=None):
    from condbench.metrics.paired_image import psnr_ssim
    from condbench.policies import parse_policy
    from condbench.seeding import PairedNoise
    from condbench.tasks.pose_digits import SSIM_WINDOW_DIGITS

    n = task.num_samples
    out = adapter.sample(cond, PairedNoise(0, range(n)), parse_policy(policy) if policy else None)
    images = adapter.decode(out.samples).expand(-1, 3, -1, -1)  # (N, 3, 8, 8) in [0, 1]
    scores = psnr_ssim(images, task.targets(range(n)).expand(-1, 3, -1, -1), win_size=SSIM_WINDOW_DIGITS)
    return scores["psnr"].mean(), scores["ssim"].mean()


PSNR_MARGIN, SSIM_MARGIN = 2.5, 0.15  # how much better than each control the baseline must be: dB; SSIM


def test_the_shipped_model_learned_to_generate_the_target_from_source_and_pose(shipped):
    """Against each pair's target, the baseline beats the null condition (drop-cond: c = t, no condition) and the
    random-pair control (every pair given another pair's condition) by a wide margin (measured here: PSNR 12.8 vs
    8.9 and 9.3 dB, SSIM 0.60 vs 0.24 and 0.29; on all 359 pairs with 50 steps, 12.0 dB / 0.55 vs drop-cond's
    8.5 dB / 0.24)."""
    task, adapter = shipped
    n = task.num_samples
    conditions = task.conditions()
    baseline = _psnr_ssim(task, adapter, conditions[0:n])
    null = _psnr_ssim(task, adapter, conditions[0:n], "drop-cond")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    shuffled = {key: value[order] for key, value in conditions[0:n].items()}
    random_pairs = _psnr_ssim(task, adapter, shuffled)
    for control in (null, random_pairs):
        assert baseline[0] > control[0] + PSNR_MARGIN
        assert baseline[1] > control[1] + SSIM_MARGIN


def test_slices_of_an_embedded_set_reuse_its_rows_instead_of_reading_conditions_again(shipped):
    """Once the adapter has embedded the task's pairs (the mean condition does), a slice reads nothing more: the
    per-pair condition files of the real pose task are read once per model, not once per policy."""
    from condbench.tasks.pose import PairConditions

    task, adapter = shipped
    reads = []

    def load(rows):
        reads.append(rows)
        return task.pair_batch(rows)

    conditions = PairConditions(load, task.num_samples)
    adapter.set_condition_mean(conditions)
    assert len(reads) == 1  # one pass over the set (24 pairs, one batch of 64)
    kept = adapter.condition_embedding(conditions[8:16])
    assert len(reads) == 1
    direct = adapter.condition_embedding(task.pair_batch(range(8, 16)))  # embedded from its tensors
    assert torch.allclose(kept, direct, atol=1e-6)
    assert adapter.condition_embedding(task.conditions()[0:4]).shape == (4, 64)  # another set: read as before
    task.prepare_adapter(adapter)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The pose-digits suite as shipped (every policy), on 8 pairs with 4 DDIM steps."""
    from condbench.runner import RunOptions, run_suite
    from condbench.suites import Suite, load_suite

    suite = load_suite("pose-digits")
    suite = Suite(**{**suite.__dict__, "task_options": {"num_pairs": 8}, "bootstrap": 10,
                     "analysis": {**suite.analysis, "sweep_points": 2},
                     "model_options": {"xmdpt-digits": {"num_steps": 4}}})
    out = tmp_path_factory.mktemp("pose-digits")
    results = run_suite(suite, out, RunOptions(log=lambda _: None))
    return out, suite, json.loads(results.read_text())


def test_the_run_scores_psnr_ssim_with_paired_deltas_and_leaves_lpips_and_fid_out_by_name(tiny_run):
    out, suite, results = tiny_run
    records = {r["policy"]: r for r in results["records"]}
    assert len(records) == len(suite.policies)
    for record in records.values():
        assert set(record["metrics"]) == {"fid_digits_cnn", "psnr", "ssim", "class_fidelity"}
        assert record["num_samples"] == 8
        protocol = record["protocol"]
        assert "lpips left out: its AlexNet weights cannot be had offline" in protocol
        assert "Inception FID left out" in protocol and "not comparable to the paper's FID" in protocol
        assert "SSIM (win 3, data_range 1)" in protocol
    details = results["tasks"]["pose-digits"]["metric_details"]
    assert set(details["left_out"]) == {"lpips", "fid"} and "lpips" not in records["baseline"]["metrics"]
    for policy, record in records.items():
        if policy == "baseline":
            continue
        assert set(record["paired_vs_baseline"]) == {"fid_digits_cnn", "psnr", "ssim", "class_fidelity"}
        for name in ("psnr", "ssim"):
            change = record["paired_vs_baseline"][name]
            assert change["delta"] == pytest.approx(record["metrics"][name] - records["baseline"]["metrics"][name])
            assert change["ci95"][0] <= change["delta"] <= change["ci95"][1]
    assert records["drop-cond"]["metrics"]["psnr"] < records["baseline"]["metrics"]["psnr"]
    analysis = results["analysis"]["xmdpt-digits"]
    assert analysis["c"]["num_conditions"] == 8 and analysis["c"]["dim"] == 64  # Table-1 statistics over pairs


def test_the_run_scores_each_sample_against_its_own_target(tiny_run):
    """PSNR and SSIM of the baseline recomputed from the stored grid (all 8 samples) and the task's targets."""
    from condbench.metrics.paired_image import psnr_ssim

    out, _, results = tiny_run
    grids = np.load(out / "samples_grid.npz")
    baseline = torch.from_numpy(grids[results["grids"]["xmdpt-digits|baseline"]])  # (8, 1, 8, 8) in [0, 1]
    assert baseline.shape == (8, 1, 8, 8)
    task = PoseDigitsTask(num_pairs=8)
    expected = psnr_ssim(baseline.expand(-1, 3, -1, -1), task.targets(range(8)).expand(-1, 3, -1, -1), win_size=3)
    record = next(r for r in results["records"] if r["policy"] == "baseline")
    assert record["metrics"]["psnr"] == pytest.approx(float(expected["psnr"].mean()), rel=1e-6)
    assert record["metrics"]["ssim"] == pytest.approx(float(expected["ssim"].mean()), rel=1e-6)


def test_the_pair_grid_context_and_the_report(tiny_run, tmp_path):
    """The run stores source | pose | target of the first pairs; `condbench report` draws the pair grid."""
    from condbench.cli import main

    out, suite, _ = tiny_run
    grids = np.load(out / "samples_grid.npz")
    pairs = PoseDigitsTask(num_pairs=8).pairs
    assert np.array_equal(grids["context_pose_digits_source"], ((pairs["source"] + 1) / 2).numpy())
    assert np.array_equal(grids["context_pose_digits_pose"], pairs["pose"].numpy())
    assert np.array_equal(grids["context_pose_digits_target"], ((pairs["target"] + 1) / 2).numpy())
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0
    page = (tmp_path / "report.html").read_text()
    assert "Pairs · xmdpt-digits" in page
    assert "source | pose | target | baseline | " in page


def test_training_is_deterministic_and_writes_a_file_the_registry_loads(tmp_path):
    from condbench.registry import load_adapter
    from condbench.tasks.pose_digits_training import PoseDigitsTraining, train_pose_digits, write_pose_digits

    settings = PoseDigitsTraining(steps=3, batch_size=8)
    first, second = (train_pose_digits(settings, log=lambda _: None) for _ in range(2))
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    path = write_pose_digits(tmp_path, settings, log=lambda _: None)
    adapter = load_adapter("xmdpt-digits", ckpt=str(path))
    for name, value in first.state_dict().items():
        assert torch.equal(adapter.model.state_dict()[name], value), name
