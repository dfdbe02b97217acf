"""The CAVP video encoder against Diff-Foley's official ``ResNet3dSlowOnly`` and ``CAVP_Inference.encode_video``.

Fixture ``tests/fixtures/cavp`` was made by ``tools/golden/make_cavp.py --official <Diff-Foley checkout>
--commit 0ba1e8add81e3e04da4f91ae04535581e79ee040`` (mmcv-lite 2.2 for ``ConvModule``): the official SlowOnly
tower at CAVP's depth-50 structure shrunk through its own arguments (base_channels 4, stage blocks (2, 1, 1, 2),
inflate (0, 0, 1, 1)) with a projection head to 16, every weight and BatchNorm statistic redrawn, run on 2 clips
of 6 frames of 32x40. Comparisons are float32 within 1e-5.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from condbench.adapters.cavp import CAVP_WEIGHTS, CAVPConfig, CAVPEncoder
from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError, read_metadata

from .conftest import assert_matches_official

FIXTURE = Path(__file__).parent / "fixtures" / "cavp" / "golden.safetensors"
META = {k: v if k in ("repo", "commit", "command") else json.loads(v) for k, v in read_metadata(FIXTURE).items()}
CONFIG = CAVPConfig(base_channels=META["config"]["base_channels"], stage_blocks=tuple(META["config"]["stage_blocks"]),
                    embed_dim=META["embed_dim"])


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURE))


def checkpoint(golden: dict, tmp_path: Path, extra: dict = {}) -> Path:
    """The fixture's weights saved as the training checkpoint names them ({'state_dict': {'module.…'}})."""
    state = {k: v for k, v in golden.items() if k.startswith("module.")}
    path = tmp_path / "cavp_tiny.ckpt"
    torch.save({"epoch": 66, "state_dict": {**state, **extra}}, path)
    return path


def test_features_match_official(golden, tmp_path):
    audio_tower = {"module.spec_encoder.fc1.weight": torch.zeros(2, 2), "module.logit_scale": torch.tensor(2.6)}
    encoder = CAVPEncoder.from_checkpoint(checkpoint(golden, tmp_path, audio_tower), CONFIG)
    with torch.no_grad():
        features = encoder(golden["input.video"])
    assert features.shape == (2, 6, META["embed_dim"])
    assert_matches_official(features, golden["output.features"])
    assert torch.allclose(features.norm(dim=-1), torch.ones(2, 6))
    assert encoder.checkpoint["sha256"] and encoder.describe()["config"]["stage_blocks"] == (2, 1, 1, 2)


def test_encode_keeps_the_first_frames_of_the_whole_clip(golden, tmp_path):
    encoder = CAVPEncoder.from_checkpoint(checkpoint(golden, tmp_path), CONFIG)
    video = golden["input.video"]
    kept = encoder.encode(video, keep=4)
    assert_matches_official(kept, golden["output.features"][:, :4])
    # the temporal kernels see the neighbours: encoding only 4 frames gives other features for the last ones
    alone = encoder.encode(video[:, :4], keep=4)
    assert not torch.allclose(alone[:, 3], kept[:, 3], atol=1e-4)


def test_bad_frames_are_refused(golden, tmp_path):
    encoder = CAVPEncoder.from_checkpoint(checkpoint(golden, tmp_path), CONFIG)
    with pytest.raises(ValueError, match=r"T >= 32.*\(1, 6, 3, 32, 40\)"):
        encoder.encode(golden["input.video"][:1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        encoder.encode(golden["input.video"][:1] * 255, keep=4)


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"video_encoder.conv1.conv.weight": torch.zeros(8, 3, 1, 7, 7)}, str(path))
    with pytest.raises(CheckpointMismatchError, match="other.safetensors does not fit CAVPEncoder"):
        CAVPEncoder.from_checkpoint(path, CONFIG)


def test_missing_checkpoint_names_the_file_and_where_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError) as error:
        CAVPEncoder.from_checkpoint()
    message = str(error.value)
    assert "cavp_epoch66.ckpt" in message and CAVP_WEIGHTS.url in message and str(tmp_path) in message


def test_full_size_layout_is_cavp_resnet3d_50():
    with torch.device("meta"):
        encoder = CAVPEncoder()
    state = encoder.state_dict()
    assert state["video_encoder.conv1.conv.weight"].shape == (64, 3, 1, 7, 7)
    assert state["video_encoder.layer3.0.conv1.conv.weight"].shape == (256, 512, 3, 1, 1)  # inflated 3x1x1
    assert state["video_encoder.layer2.0.conv1.conv.weight"].shape == (128, 256, 1, 1, 1)
    assert state["video_project_head.weight"].shape == (512, 2048)
    assert sum(len(getattr(encoder.video_encoder, f"layer{i}")) for i in range(1, 5)) == 16
