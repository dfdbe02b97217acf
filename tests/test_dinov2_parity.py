"""DINOv2 encoders (transformers' Dinov2Model + the torch-hub position interpolation) against the official
facebookresearch/dinov2 code (``dinov2/models/vision_transformer.py``, ``get_intermediate_layers``).

Fixtures in ``tests/fixtures/dinov2`` were made by running the official code at commit
b8931f7bf91576930313be2c6d6af376033b35f0 with
``PYTHONPATH=src python tools/golden/make_dinov2.py --official <dinov2 checkout> --commit <that commit>``:
two tiny ViTs built as the hub builds ViT-B/14 (MLP FFN) and ViT-g/14 (SwiGLU FFN) (embed 32, depth 2, 2 heads,
patch 14, img_size 518 so a 224-px input interpolates the 37x37 position table, layer scale), every parameter
re-drawn at random, and their CLS + patch features after the final norm on two 224-px inputs.

transformers' own interpolation (``size=(16, 16)``) instead of the hub's (``scale_factor=16.1/37``) moves these
random-weight features (std 1.0, max 4.4) by 0.60 max / 0.074 mean abs (MLP) and 0.73 max / 0.073 mean (SwiGLU),
measured with torch 2.14.1 and transformers 5.23.0; with the hub interpolation the gap is 0.0 and 3.6e-7.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError, load_state_dict, read_metadata
from condbench.encoders.dinov2 import (DINOV2_VITB14, DINOV2_VITG14, DINOv2Spec, XMDPTEncoders,
                                       convert_official_state_dict, dinov2_features, dinov2_input,
                                       hub_dinov2_model, load_dinov2)
from condbench.hub import WeightSource
from condbench.seeding import PairedNoise

FIXTURES = Path(__file__).parent / "fixtures" / "dinov2"
META = {k: json.loads(v) if k not in ("repo", "commit", "command") else v
        for k, v in read_metadata(FIXTURES / "golden.safetensors").items()}
TOL = dict(atol=1e-5, rtol=1e-5)


def tiny_spec(swiglu: bool) -> DINOv2Spec:
    cfg = META["config"]
    return DINOv2Spec("tiny", cfg["embed_dim"], cfg["depth"], cfg["num_heads"], swiglu,
                      WeightSource("tiny.pth", "https://example.invalid/tiny.pth"), cfg["img_size"], cfg["patch_size"])


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURES / "golden.safetensors"))


@pytest.fixture(scope="module")
def images(golden) -> torch.Tensor:
    built = PairedNoise(META["image_seed"], range(2)).draw((3, 224, 224))
    assert torch.equal(built[:, :, :2, :3].reshape(-1), golden["images_corner"])
    assert torch.allclose(built.double().sum(), golden["images_sum"], atol=1e-6)
    return built


def converted(kind: str, swiglu: bool) -> torch.nn.Module:
    model = hub_dinov2_model(tiny_spec(swiglu))
    path = FIXTURES / f"{kind}.weights.safetensors"
    state = convert_official_state_dict(load_state_dict(path), model, str(path))
    model.load_state_dict(state, strict=True)
    return model


@pytest.mark.parametrize("kind, swiglu", [("mlp", False), ("swiglu", True)])
def test_features_match_official_get_intermediate_layers(kind, swiglu, images, golden):
    ours = dinov2_features(converted(kind, swiglu), images)
    ref = golden[f"{kind}_features"]
    assert ours.shape == ref.shape == (2, 257, META["config"]["embed_dim"])
    assert torch.allclose(ours, ref, **TOL), (ours - ref).abs().max()


@pytest.mark.parametrize("kind, swiglu", [("mlp", False), ("swiglu", True)])
def test_transformers_own_interpolation_differs_from_the_official(kind, swiglu, images, golden):
    from transformers import Dinov2Model

    ours = converted(kind, swiglu)
    plain = Dinov2Model(ours.config).eval()
    plain.load_state_dict(ours.state_dict())
    with torch.no_grad():
        theirs = plain(pixel_values=images).last_hidden_state
    gap = float((theirs - golden[f"{kind}_features"]).abs().max())
    assert gap > 0.1, gap  # measured 0.60 (mlp) and 0.73 (swiglu)


def test_a_file_of_another_size_names_the_unused_keys():
    state = load_state_dict(FIXTURES / "mlp.weights.safetensors")
    spec = tiny_spec(False)
    small = DINOv2Spec("tiny", spec.hidden_size, 1, spec.num_heads, False, spec.weights, spec.image_size, spec.patch_size)
    with pytest.raises(CheckpointMismatchError, match="does not fit a 1-block DINOv2.*unused keys blocks.1.attn"):
        convert_official_state_dict(state, hub_dinov2_model(small), "mlp.weights.safetensors")


def test_missing_weights_name_the_file_and_the_official_url(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path))
    monkeypatch.setenv("CONDBENCH_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="(?s)dinov2_vitg14_pretrain.pth.*dl.fbaipublicfiles.com/dinov2/"
                                                      "dinov2_vitg14/dinov2_vitg14_pretrain.pth"):
        load_dinov2(DINOV2_VITG14)
    assert DINOV2_VITB14.weights.url.endswith("dinov2_vitb14/dinov2_vitb14_pretrain.pth")


def test_encoders_take_256px_images_in_0_1_and_give_xmdpt_features(images):
    model = converted("mlp", False)
    encoders = XMDPTEncoders(model, model)
    sources, skeletons = torch.rand(2, 3, 256, 256), torch.rand(2, 3, 256, 256)
    out = encoders(sources, skeletons)
    assert torch.equal(out["pose_features"], dinov2_features(model, dinov2_input(skeletons)))
    assert torch.equal(out["source_features"], dinov2_features(model, dinov2_input(sources * 2 - 1)))
    assert dinov2_input(sources).shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="skeletons must be images"):
        encoders(sources, skeletons[:, :1])
