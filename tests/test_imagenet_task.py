"""The ImageNet task end to end on the CPU: a tiny DiT in the official layout (1,000 classes), a tiny SD-VAE,
random Inception weights, a small reference batch and a tiny CLIP, run by the real runner."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from condbench.adapters.dit_model import DiT, DiTConfig
from condbench.metrics.adm import adm_inception_score
from condbench.metrics.frechet import feature_statistics, frechet_distance
from condbench.metrics.inception import InceptionFeatures, random_state_dict
from condbench.runner import RunOptions, run_suite
from condbench.suites import Suite
from condbench.tasks.imagenet import ImageNetTask

from .test_clip_score import save_tiny_clip

TINY = dict(depth=1, hidden_size=16, num_heads=2, input_size=4)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    torch.manual_seed(0)
    dit = DiT(DiTConfig(**TINY))
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.1)
    torch.save(dit.state_dict(), root / "DiT-XL-2-256x256.pt")
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    vae.save_pretrained(root / "vae")
    write_inception_and_reference_batch(root)
    save_tiny_clip(root / "clip")
    return root


def write_inception_and_reference_batch(root) -> None:
    """Random Inception weights (``inception.pth``) and a 12-image ADM reference batch with their statistics."""
    torch.save(random_state_dict(seed=0), root / "inception.pth")
    extractor = InceptionFeatures.load(root / "inception.pth")
    reference = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (12, 3, 16, 16), dtype=np.uint8))
    out = extractor(reference)
    mu, sigma = feature_statistics(out.pool.numpy())
    mu_s, sigma_s = feature_statistics(out.spatial.numpy())
    np.savez(root / "VIRTUAL_imagenet256_labeled.npz", arr_0=reference.permute(0, 2, 3, 1).numpy(), mu=mu,
             sigma=sigma, mu_s=mu_s, sigma_s=sigma_s)


def suite(files) -> Suite:
    return Suite(name="imagenet-tiny", task="imagenet", models=["dit-xl-2"], policies=["baseline", "tail:0.05"],
                 batch_size=4, shard_size=6, bootstrap=5, keep_samples=True, analysis={"sweep_points": 2},
                 task_options={"samples_per_class": 2, "classes": 3, "classifier": None,
                               "reference_batch": str(files / "VIRTUAL_imagenet256_labeled.npz"),
                               "inception_weights": str(files / "inception.pth"), "clip_model": str(files / "clip")},
                 model_options={"dit-xl-2": {"ckpt": str(files / "DiT-XL-2-256x256.pt"), "model_config": TINY,
                                             "num_steps": 3, "decoder": str(files / "vae")}})


def test_a_run_scores_every_metric_with_its_protocol(files, tmp_path):
    results = json.loads(run_suite(suite(files), tmp_path, RunOptions(log=lambda _: None)).read_text())
    records = {r["policy"]: r for r in results["records"]}
    base = records["baseline"]
    assert set(base["metrics"]) == {"fid", "sfid", "is", "is_std", "precision", "recall", "clip_score"}
    assert base["metrics"]["fid"] > 0 and 0 <= base["metrics"]["precision"] <= 1
    for needed in ("ADM evaluator protocol", "inception-v3-compat", "splits of 5000", "k=3", "CLIP score"):
        assert needed in base["protocol"], needed
    paired = records["tail:0.05"]["paired_vs_baseline"]
    assert set(paired) == {"fid", "sfid", "is", "clip_score"}  # P/R are not bootstrapped
    assert paired["fid"]["delta"] == pytest.approx(records["tail:0.05"]["metrics"]["fid"] - base["metrics"]["fid"])
    # the numbers are those of the metric functions on the kept samples
    arr = np.load(base["samples_npz"])
    assert arr["arr_0"].shape == (6, 8, 8, 3) and list(arr["labels"]) == [0, 1, 2, 0, 1, 2]
    extractor = InceptionFeatures.load(files / "inception.pth")
    out = extractor(torch.from_numpy(arr["arr_0"]).permute(0, 3, 1, 2))
    reference = np.load(files / "VIRTUAL_imagenet256_labeled.npz")
    fid = frechet_distance(*feature_statistics(out.pool.numpy()), reference["mu"], reference["sigma"])
    assert base["metrics"]["fid"] == pytest.approx(fid, rel=1e-5)
    assert base["metrics"]["is"] == pytest.approx(adm_inception_score(out.logits.numpy())[0], rel=1e-5)


def test_bootstrap_fid_form_agrees_with_the_headline_formula(files):
    task = ImageNetTask(**suite(files).task_options)
    rng = np.random.default_rng(1)
    features = torch.from_numpy(rng.normal(size=(40, 2048 + 2023)).astype(np.float32))
    outputs = torch.cat([torch.randn(40, 1008), torch.zeros(40, 1), torch.full((40, 1), 25.0)], dim=1)
    labels = torch.zeros(40, dtype=torch.long)
    exact, fast = task.evaluator.score(features, outputs, labels), task.evaluator.bootstrap_score(features, outputs, labels)
    assert fast["fid"] == pytest.approx(exact["fid"], rel=1e-6) and fast["sfid"] == pytest.approx(exact["sfid"], rel=1e-6)
    assert fast["clip_score"] == exact["clip_score"] == 25.0


def test_classes_option_and_bad_values():
    assert ImageNetTask(samples_per_class=2, classes=3).conditions().tolist() == [0, 1, 2, 0, 1, 2]
    assert ImageNetTask().num_samples == 5000 and len(ImageNetTask().class_names) == 1000
    with pytest.raises(ValueError, match="samples_per_class"):
        ImageNetTask(samples_per_class=0)
    with pytest.raises(ValueError, match="classes"):
        ImageNetTask(classes=1001)
