"""The shipped text suite end to end on the CPU, in the SD3.5 release's bfloat16, through the real loader and task:
a tiny random SD3.5-style pipeline folder (CLIP-L/G text encoders, no T5), a tiny prompt file, a tiny COCO-like
reference folder, random Inception weights and a tiny CLIP, with the suite's own policies plus mask=fixed ones,
sampled together. Its numbers are a test of the plumbing, never a result. The whole run scores CLIP only: a
2048-d Frechet distance per policy and bootstrap resample costs minutes on the CPU (Inception and the reference
folder are tested on the task's device below)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

pytest.importorskip("diffusers")

from condbench.adapters.sd3 import SD3_RELEASES, load_sd3  # noqa: E402
from condbench.cli import main  # noqa: E402
from condbench.metrics.inception import random_state_dict  # noqa: E402
from condbench.policies import parse_policy  # noqa: E402
from condbench.suites import suite_path  # noqa: E402
from condbench.tasks.text import TextTask  # noqa: E402

from .test_clip_score import save_tiny_clip  # noqa: E402
from .test_sd3 import save_tiny_pipeline  # noqa: E402
from .test_sd3_dtype import without_accelerate  # noqa: E402,F401 (a fixture)

PROMPTS = ["a red cube on a table", "two cats asleep"]
MODEL = "sd3.5-medium"  # its model card's dtype: bfloat16
FIXED_TAU = 1.0  # the tiny model's c is of order 1 (the suite's 0.05 removes nothing from it)
FIXED = [f"tail:{FIXED_TAU},mask=fixed", f"tail:{FIXED_TAU}@last:10,mask=fixed"]
STEPS = 12  # room for the suite's @last:10


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("text-bf16")
    save_tiny_pipeline(root / MODEL)
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    (root / "val2017").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(root / "val2017" / f"{i:012d}.jpg")
    torch.save(random_state_dict(seed=0), root / "inception.pth")
    save_tiny_clip(root / "clip")
    return root


def task_options(files, **extra) -> dict:
    return {"prompt_file": str(files / "prompts.txt"), "reference_images": str(files / "val2017"), "image_size": 8,
            "inception_weights": str(files / "inception.pth"), "clip_model": str(files / "clip"), **extra}


def model_options(files, **extra) -> dict:
    return {MODEL: {"path": str(files / MODEL), "t5": False, "num_steps": STEPS, **extra}}


def shipped_suite_file(files, tmp_path) -> str:
    """The shipped text suite with the tiny files, one bfloat16 model, its policies plus ``FIXED``, together."""
    suite = yaml.safe_load(suite_path("text").read_text())
    suite.update(models=[MODEL], policies=suite["policies"] + FIXED, together="all", batch_size=2, shard_size=2,
                 bootstrap=5, analysis={"sweep_points": 2}, task_options=task_options(files, fid=False),
                 model_options=model_options(files))
    path = tmp_path / "text-tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    return str(path)


def prepared_adapter(files):
    """The model of the run, loaded by the release's loader, given the task's prompts as the run gives them."""
    release = next(r for r in SD3_RELEASES if r.name == MODEL)
    adapter = load_sd3(release, files / MODEL, t5=False, num_steps=STEPS)
    TextTask(**task_options(files)).prepare_adapter(adapter)
    return adapter


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_the_metric_networks_run_on_the_task_device_and_return_float32_on_the_cpu(files, offline_cache):
    task = TextTask(**task_options(files, device="cpu"))
    evaluator = task.evaluator
    assert evaluator.inception.device == torch.device("cpu")
    assert {p.device for p in evaluator.clip.model.parameters()} == {torch.device("cpu")}
    features, outputs = evaluator.features(torch.rand(2, 3, 8, 8), PROMPTS)
    assert features.device.type == outputs.device.type == "cpu" and features.dtype == outputs.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_metric_networks_leave_the_cpu(files, offline_cache):
    evaluator = TextTask(**task_options(files, device="cuda")).evaluator
    assert evaluator.inception.device.type == "cuda"
    assert {p.device.type for p in evaluator.clip.model.parameters()} == {"cuda"}
    features, outputs = evaluator.features(torch.rand(2, 3, 8, 8), PROMPTS)
    assert features.device.type == outputs.device.type == "cpu" and features.dtype == outputs.dtype == torch.float32


def test_mask_fixed_uses_the_mean_c_over_the_task_prompts(files, offline_cache):
    adapter = prepared_adapter(files)
    t = adapter.sampler_timesteps()[:1]
    expected = adapter.embed_parts(PROMPTS, t.expand(len(PROMPTS))).c.float().mean(0, keepdim=True)
    torch.testing.assert_close(adapter.mean_embedding(t).float(), expected, rtol=0, atol=2 ** -6 * expected.abs().max())
    assert adapter.mean_embedding(t).dtype == torch.bfloat16


def test_the_removed_reference_prompts_option_is_named_with_its_replacement(files, offline_cache, tmp_path, capsys):
    suite = yaml.safe_load(Path(shipped_suite_file(files, tmp_path)).read_text())
    suite["model_options"] = model_options(files, reference_prompts=PROMPTS)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(suite))
    assert main(["run", str(tmp_path / "old.yaml"), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "reference_prompts was removed" in err and "the task's own prompts" in err and "Traceback" not in err


def test_the_shipped_text_suite_runs_in_bfloat16_with_mask_fixed_and_late_policies(files, offline_cache, tmp_path,
                                                                                     without_accelerate):
    """Without accelerate too (diffusers would load the transformer in float32): every record says bfloat16."""
    suite_file = shipped_suite_file(files, tmp_path)
    assert main(["run", suite_file, "-o", str(tmp_path / "run")]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    records = {r["policy"]: r for r in results["records"]}
    policies = yaml.safe_load(Path(suite_file).read_text())["policies"]
    assert len(records) == len(policies) and "tail:0.05@last:10" in records
    assert results["models"][MODEL]["sampler"]["dtype"] == "torch.bfloat16"
    assert "network_dtypes" not in results["models"][MODEL]["sampler"]
    for record in records.values():
        assert set(record["metrics"]) == {"clip_score"} and np.isfinite(record["metrics"]["clip_score"])
        assert record["config"]["sampler"]["dtype"] == "torch.bfloat16"
    assert records["tail:0.05@last:10"]["config"]["shared_prefix_steps"] == STEPS - 10
    # a fixed mask removes, in every row, the dimensions where the mean c over the task's prompts is small
    adapter = prepared_adapter(files)
    reference = adapter.mean_embedding(adapter.sampler_timesteps()[:1])
    removed = int((reference.abs() < FIXED_TAU).sum())
    fixed = records[parse_policy(FIXED[0]).key()]
    assert 0 < removed < adapter.embed_dim and fixed["dims_removed_first_step"] == removed
