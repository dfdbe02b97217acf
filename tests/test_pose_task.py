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
        f"DeepFashion pairs file not found: {cache / 'deepfashion' / 'test_pairs.txt'}",
        "drive.google.com/drive/folders/1PhnaFNg9zxMZM-ccJAzLIt2iqWFRzXSw",  # pairs, poses, images: how
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
    assert not (tmp_path / "out" / "results.jsonl").exists()  # stopped before any work (the cache folder aside)
