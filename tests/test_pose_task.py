"""The pose task (X-MDPT on DeepFashion, PIDM protocol): preflight with no files, and the whole runner path on
tiny real components (tiny random X-MDPT, tiny DINOv2s, tiny VAE, a generated mini DeepFashion)."""
import os
import subprocess
import sys

import pytest


def test_pose_suite_without_files_stops_before_any_work_listing_every_missing_file(tmp_path):
    """`condbench run pose` with an empty cache, offline: one message naming every file and how to get it."""
    env = {"CONDBENCH_CACHE": str(tmp_path / "cache"), "CONDBENCH_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    run = subprocess.run([sys.executable, "-m", "condbench", "run", "pose", "-o", str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 2, run.stdout + run.stderr
    message = run.stderr
    cache = tmp_path / "cache"
    expected = [
        "suite 'pose' cannot run: 10 file(s) missing",
        # which file, where it was looked for, why nothing else of the split is listed, and how to provide it
        f"DeepFashion pairs file test_pairs.txt not found: looked for it at {cache / 'deepfashion' / 'test_pairs.txt'} "
        "(ROOT = the pose task option root; unset: $CONDBENCH_CACHE/deepfashion)",
        "so those are checked once it exists",
        "download test_pairs.txt (the PIDM/GFLA split, Google Drive only: download it by hand) from "
        "https://drive.google.com/drive/folders/1PhnaFNg9zxMZM-ccJAzLIt2iqWFRzXSw and place it at "
        f"{cache / 'deepfashion' / 'test_pairs.txt'}",
        "PIDM's data/prepare_data.py",  # the rest of the split: poses and images
        f"FID reference folder not found: {cache / 'deepfashion' / 'train_256x256_pngs'}",
        f"X-MDPT fine-tuned VAE not found: no diffusers folder (config.json + weights) at "
        f"{cache / 'weights' / 'diffuser_finetune_vae'}",
        "dinov2_vitb14_pretrain.pth", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth",
        "dinov2_vitg14_pretrain.pth", "https://dl.fbaipublicfiles.com/dinov2/dinov2_vitg14/dinov2_vitg14_pretrain.pth",
        "inception_v3_google-0cc3c7bd.pth", "alexnet-owt-7be5be79.pth",
        "[model xmdpt-s-2]", "[model xmdpt-b-2]", "[model xmdpt-l-2]", "XMDPT_L_2/ema_0.9999_300000.pt",
    ]
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    assert message.count("How to provide") == 10
    assert "To provide them all" in message  # every file has its suite key in the lines at the end
    assert not (tmp_path / "out" / "results.jsonl").exists()  # stopped before any work (the cache folder aside)


# --- the whole runner path on tiny real components

POSE = ["60 20", "60 45", "40 45", "35 80", "35 110", "80 45", "85 80", "85 110", "50 120", "50 170", "50 220",
        "72 120", "72 170", "72 220", "55 15", "65 15", "-1 -1", "70 18"]  # 18 keypoints, 176x256 frame + 40


def write_png(path, seed: int) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, 256)[None, :, None] * rng.uniform(0.3, 1, size=(1, 1, 3))
    image = np.clip(base + rng.normal(0, 20, size=(256, 256, 3)), 0, 255).astype(np.uint8)  # smooth + noise
    Image.fromarray(image).save(path)


def mini_deepfashion(root, pairs: int = 4):
    """PNG-folder DeepFashion: ``pairs`` test pairs (two candidate sources each), keypoint files, 4 train images."""
    lines = []
    for i in range(pairs):
        target, sources = f"img/WOMEN/Dresses/id_{i:08d}/01_1_front.jpg", [
            f"img/WOMEN/Dresses/id_{i:08d}/02_{k}_side.jpg" for k in (1, 2)]
        lines.append(",".join([target, *sources]))
        for n, key in enumerate([target, *sources]):
            write_png(root / "pngs" / key.replace(".jpg", ".png"), 10 * i + n)
        pose = root / key_to_pose(target)
        pose.parent.mkdir(parents=True, exist_ok=True)
        shift = 3 * i
        pose.write_text("\n".join(p if p.startswith("-1") else " ".join(str(float(v) + 40 * (j == 0) + shift)
                                                                           for j, v in enumerate(p.split()))
                                  for p in POSE) + "\n")
    (root / "test_pairs.txt").write_text("\n".join(lines) + "\n")
    for n in range(4):
        write_png(root / "train_256x256_pngs" / f"train_{n}.png", 1000 + n)
    return root


def key_to_pose(key: str) -> str:
    return key.replace("img/", "pose/").replace(".jpg", ".txt")


TINY_XMDPT = dict(hidden_size=16, depth=2, num_heads=2, decode_layer=1, pose_dim=32, source_dim=32)
TINY_DINOV2 = {"hidden_size": 32, "depth": 2, "num_heads": 2}  # the layout of tests/fixtures/dinov2


def tiny_xmdpt_file(path):
    import torch

    from condbench.adapters.xmdpt_model import XMDPT, xmdpt_config

    torch.manual_seed(0)
    net = XMDPT(xmdpt_config("S", **TINY_XMDPT))
    with torch.no_grad():
        for p in net.parameters():  # every parameter random (the official init zeroes the adaLN layers)
            p.copy_(0.2 * torch.randn_like(p))
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def random_metric_networks(monkeypatch):
    """TEST ONLY: the pose task's Inception and AlexNet with random weights (never used outside tests)."""
    import torch
    from torchvision.models import alexnet

    from condbench.metrics.paired_image import LPIPSAlex
    from condbench.metrics.pidm_fid import PidmInception, random_state_dict
    from condbench.tasks.pose import PoseTask

    torch.manual_seed(1)
    inception = PidmInception.from_state_dict(random_state_dict(0))
    lpips = LPIPSAlex.from_backbone_state_dict(alexnet(weights=None).state_dict())
    monkeypatch.setattr(PoseTask, "inception", property(lambda self: inception))
    monkeypatch.setattr(PoseTask, "lpips", property(lambda self: lpips))
    return inception, lpips


def test_runner_scores_pose_samples_with_the_pidm_metrics_and_paired_deltas(tmp_path, monkeypatch,
                                                                           random_metric_networks):
    """Conditions, sampling, decoding, paired metrics, bootstrap deltas, mask=fixed, through run_suite (~25 s on 2
    cores: 256-px VAE decodes and paired metrics of 12 samples). FID is off here: a 2048-d FID of 4 samples is a
    singular matrix square root that takes over a minute on 2 cores per call; pose_fid is tested in
    tests/test_paired_image_metrics.py, and the evaluator test below shows that score() uses it."""
    import json
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from condbench.metrics.paired_image import reconstruction_metrics
    from condbench.runner import RunOptions, run_suite
    from condbench.suites import Suite
    from tests.test_xmdpt_parity import tiny_vae_folder

    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    inception, lpips = random_metric_networks
    root = mini_deepfashion(tmp_path / "deepfashion")
    vae = tiny_vae_folder(tmp_path / "vae")
    fixtures = Path(__file__).parent / "fixtures" / "dinov2"
    suite = Suite(name="pose-tiny", task="pose", models=["xmdpt-s-2"], seed=3, batch_size=4, shard_size=4,
                  keep_samples=True, bootstrap=4, analysis={"taus": [0.01, 0.1], "sweep_points": 2},
                  policies=["baseline", "tail:0.1", "tail:0.1,mask=fixed"],
                  task_options={"root": str(root), "images": str(root / "pngs"), "seed": 3, "vae": str(vae),
                                "dinov2_pose": str(fixtures / "mlp.weights.safetensors"),
                                "dinov2_source": str(fixtures / "swiglu.weights.safetensors"),
                                "dinov2_overrides": TINY_DINOV2, "condition_cache": str(tmp_path / "conditions"),
                                "fid": False},
                  model_options={"xmdpt-s-2": {"ckpt": str(tiny_xmdpt_file(tmp_path / "tiny.pt")),
                                               "model_config": TINY_XMDPT, "num_steps": 3}})  # decodes with the task's VAE
    results = json.loads(run_suite(suite, tmp_path / "run", RunOptions(log=lambda m: print(time.strftime("%X"), m, flush=True))).read_text())
    records = {r["policy"]: r for r in results["records"]}
    assert set(records) == {"baseline", "tail:0.1", "tail:0.1,mask=fixed"}
    assert results["analysis"]["xmdpt-s-2"]["c"]["dim"] == 16  # Table-1 statistics over the 4 pairs
    assert results["models"]["xmdpt-s-2"]["decoder"]["folder"] == str(vae)  # no decoder option: the task's VAE

    from condbench.tasks.pose import PoseTask

    task = PoseTask(**suite.task_options)
    targets = task.targets(range(4))  # (4, 3, 256, 256) uint8
    for record in records.values():
        samples = torch.from_numpy(np.load(record["samples_npz"])["arr_0"]).permute(0, 3, 1, 2)  # (4, 3, 256, 256)
        assert samples.shape == (4, 3, 256, 256)
        paired = reconstruction_metrics(samples, targets)
        expected = {**{k: float(v.mean()) for k, v in paired.items()}, "lpips": float(lpips(samples, targets).mean())}
        assert record["metrics"].keys() == expected.keys()
        for name, value in expected.items():
            assert record["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
        assert "PIDM" in record["protocol"] and "drops the last partial batch of 64" in record["protocol"]
    pruned = records["tail:0.1"]
    assert pruned["dims_removed"] > 0
    assert set(pruned["paired_vs_baseline"]) == {"psnr", "ssim", "ssim_256", "lpips"}
    for name, change in pruned["paired_vs_baseline"].items():
        assert change["delta"] == pytest.approx(pruned["metrics"][name] - records["baseline"]["metrics"][name])
        assert change["ci95"][0] <= change["delta"] <= change["ci95"][1]
    assert pruned["metrics"]["psnr"] != records["baseline"]["metrics"]["psnr"]  # pruning changed the samples

    from condbench.reports.html import build_report

    grids = np.load(tmp_path / "run" / "samples_grid.npz")
    assert np.array_equal(grids["context_pose_target"], targets.float().div(255).numpy())
    page = build_report([tmp_path / "run"], tmp_path / "run" / "index.html").read_text()
    assert "Pairs · xmdpt-s-2" in page
    assert "source | pose | target | baseline | tail:0.1 | tail:0.1,mask=fixed" in page


def test_pose_evaluator_features_and_scores_follow_the_pidm_functions(random_metric_networks):
    """features(): Inception features and per-pair metrics of each image vs its target; score(): FID by
    pose_fid (sqrtm) and the per-pair means; bootstrap_score(): the eigen form of the same FID (8-d statistics
    here, so the matrix square roots are instant)."""
    import numpy as np
    import torch

    from condbench.metrics.paired_image import reconstruction_metrics
    from condbench.metrics.pidm_fid import ReferenceStatistics, pose_fid
    from condbench.tasks.pose import PairBatch
    from condbench.tasks.pose_metrics import PoseEvaluator

    inception, lpips = random_metric_networks
    gen = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 256, (5, 3, 256, 256), generator=gen, dtype=torch.uint8)
    images = torch.rand(2, 3, 256, 256, generator=gen)
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 8))
    reference = ReferenceStatistics(ref.mean(0), np.cov(ref, rowvar=False), 50, "test")
    evaluator = PoseEvaluator(lambda indices: targets[list(indices)], inception, reference, lpips)
    features, outputs = evaluator.features(images, PairBatch({}, range(3, 5)))
    paired = reconstruction_metrics(images, targets[3:5])
    assert torch.equal(features, torch.from_numpy(inception.features(images)))
    assert np.array_equal(outputs.numpy(), np.stack([paired["psnr"], paired["ssim"], paired["ssim_256"],
                                                     lpips(images, targets[3:5])], axis=1))
    small = rng.normal(size=(40, 8)) + 0.3  # 8-d features stand in for the 2048-d ones in score()
    outputs = torch.from_numpy(rng.uniform(size=(40, 4)))
    scored = evaluator.score(small, outputs, None)
    assert scored["fid"] == pose_fid(small, reference)
    assert scored["lpips"] == float(np.mean(outputs.numpy()[:, 3])) and scored["ssim_256"] == float(np.mean(outputs.numpy()[:, 2]))
    assert evaluator.bootstrap_score(small, outputs, None)["fid"] == pytest.approx(scored["fid"], rel=1e-9)
    with pytest.raises(ValueError, match="2 images for 3 pairs"):
        evaluator.features(images, PairBatch({}, range(3)))
