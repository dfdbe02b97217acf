"""The text task: its plan, its preflight without any file, and a whole run on a tiny random SD3 pipeline.

The end-to-end run uses tiny random components and a random Inception: its numbers are a smoke test of the
plumbing (prompts through the runner, shards, records), never a result.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from condbench.cli import main

pytest.importorskip("diffusers")


@pytest.fixture
def offline_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.delenv("CONDBENCH_INCEPTION_WEIGHTS", raising=False)


def test_dry_run_plans_every_model_and_policy_without_files(offline_empty, capsys):
    assert main(["run", "text", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("sd3.5-large") == 12 and "36 cells" in out and "1000" in out


def test_run_without_weights_stops_before_any_work_listing_every_missing_file(offline_empty, tmp_path, capsys):
    assert main(["run", "text", "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    for needed in ("captions_val2017.json", "annotations_trainval2017.zip", "val2017", "weights-inception-2015-12-05",
                   "openai/clip-vit-large-patch14", "stabilityai/stable-diffusion-3-medium-diffusers",
                   "stabilityai/stable-diffusion-3.5-medium", "stabilityai/stable-diffusion-3.5-large", "gated"):
        assert needed in err, needed
    assert err.count("condbench run: error") == 1 and "7 file(s) missing" in err
    assert not (tmp_path / "run" / "results.json").exists()
    assert not [p for p in (tmp_path / "run").rglob("*") if p.is_file()]  # nothing was computed


@pytest.mark.slow  # a random Inception at 299 x 299 on the CPU for 7 images
def test_whole_run_on_a_tiny_random_pipeline(offline_empty, tmp_path, monkeypatch):
    from condbench import registry
    from condbench.metrics.clean_fid import FolderReference
    from condbench.metrics.inception import InceptionFeatures, random_state_dict
    from condbench.runner import RunOptions, run_suite
    from condbench.suites import Suite
    from condbench.tasks.text import TextTask
    from condbench.tasks.text_metrics import TextEvaluator
    from .test_sd3 import STEPS, make_adapter

    prompts = ["a red cube on a table", "two cats asleep"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts))
    adapter = make_adapter()
    monkeypatch.setitem(registry.MODELS, "tiny-sd3", registry.ModelEntry(
        "tiny-sd3", "text", adapter.embed_dim, "tiny", "built in the test", lambda **_: adapter, STEPS, 7.0))
    inception = InceptionFeatures.from_state_dict(random_state_dict(seed=0))
    (tmp_path / "ref").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / "ref" / f"{i}.png")
    evaluator = TextEvaluator(8, inception, FolderReference.compute(tmp_path / "ref", 8, inception))
    monkeypatch.setattr(TextTask, "evaluator", property(lambda self: evaluator))
    suite = Suite(name="tiny-text", task="text", models=["tiny-sd3"], policies=["baseline", "tail:0.3@last:2"],
                  batch_size=1, shard_size=2, bootstrap=5, keep_samples=True,
                  task_options={"prompt_file": str(tmp_path / "prompts.txt"), "fid": False, "clip_model": None,
                                "image_size": 8})
    results = json.loads(run_suite(suite, tmp_path / "run", RunOptions(log=lambda _: None)).read_text())
    assert results["analysis"]["tiny-sd3"]["c"]["num_conditions"] == 2
    base, tail = results["records"]
    assert base["policy"] == "baseline" and np.isfinite(base["metrics"]["fid"])
    assert tail["config"]["shared_prefix_steps"] == STEPS - 2 and tail["dims_removed"] > 0
    saved = np.load(base["samples_npz"])
    assert saved["arr_0"].shape == (2, 8, 8, 3) and list(saved["labels"]) == prompts
    with torch.no_grad():  # the stored baseline equals a direct call of the adapter for those prompts
        from condbench.seeding import PairedNoise

        direct = adapter.decode(adapter.sample(prompts, PairedNoise(0, range(2))).samples)
    assert np.array_equal(saved["arr_0"], (torch.floor(direct * 255 + 0.5).clamp(0, 255).to(torch.uint8)
                                           .permute(0, 2, 3, 1).numpy()))
