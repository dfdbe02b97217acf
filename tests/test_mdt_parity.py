"""MDTv2 against the official sail-sg/MDT code (``masked_diffusion/models.py``, ``gaussian_diffusion.py``).

Fixtures in ``tests/fixtures/mdt`` were made by running the official code at commit
7d26c2162c462bd0b90f97f3a1c36cdaaac616ec with
``PYTHONPATH=src python tools/golden/make_mdt.py --official <MDT checkout> --commit <that commit>``:
a tiny MDTv2 (hidden 16, 4 heads, depth 6 with decode_layer 2, so 2 in-, 2 out-, 2 decoder blocks and a
side block; latent 4x8x8, patch 2, 10 classes + null) with every parameter re-drawn at random, saved in the
official key layout, the official c (captured at the first block's adaLN input), network outputs,
``forward_with_cfg`` outputs (cfg 3.8, power-cosine pow 4) at each step of a 10-step respacing, and the
final latents of the official guided ``p_sample_loop`` fed the same PairedNoise draws as condbench.
Comparisons are float32 with atol 1e-5 and rtol 1e-5; the sampler's final latents (size ~10^2, since a
random network's eps does not resemble x) with rtol 1e-5 and atol 1e-5 times their largest magnitude.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from condbench.adapters.base import PolicyHook
from condbench.adapters.dit_model import DiT, DiTConfig
from condbench.adapters.mdt import MDTAdapter
from condbench.adapters.mdt_model import (MDT, MDT_EMBEDDER_PREFIXES, MDT_TRAINING_ONLY_PREFIXES, MDT_XL_2,
                                          MDTConfig, relative_position_index)
from condbench.checkpoints import CheckpointMismatchError, load_state_dict, load_strict, read_metadata
from condbench.policies import parse_policy
from condbench.seeding import PairedNoise

from .conftest import assert_matches_official

FIXTURES = Path(__file__).parent / "fixtures" / "mdt"
WEIGHTS = FIXTURES / "weights.safetensors"
META = {k: json.loads(v) if k not in ("repo", "commit", "command") else v
        for k, v in read_metadata(FIXTURES / "golden.safetensors").items()}

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def golden() -> dict:
    return load_file(str(FIXTURES / "golden.safetensors"))


@pytest.fixture(scope="module")
def model() -> MDT:
    net = MDT(MDTConfig(**META["config"]))
    load_strict(net, load_state_dict(WEIGHTS), str(WEIGHTS), ignore_prefixes=MDT_TRAINING_ONLY_PREFIXES)
    return net.eval()


def adapter_for(model: MDT) -> MDTAdapter:
    return MDTAdapter(model, "tiny-mdt", num_steps=META["sampler_steps"], cfg_scale=META["cfg_scale"],
                      scale_pow=META["scale_pow"], diffusion_steps=META["diffusion_steps"])


def test_official_file_carries_training_only_keys_that_a_plain_strict_load_refuses():
    state = load_state_dict(WEIGHTS)
    assert any(k.startswith("sideblocks.") for k in state) and "mask_token" in state
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: mask_token, sideblocks"):
        load_strict(MDT(MDTConfig(**META["config"])), state, str(WEIGHTS))


def test_c_and_network_output_match_official(model, golden):
    with torch.no_grad():
        t_part, y_part = model.embed_parts(golden["t"], golden["y"])
        out = model(golden["x"], golden["t"], golden["y"])
    assert torch.allclose(t_part + y_part, golden["c"], **TOL)
    assert torch.allclose(out, golden["out"], **TOL), (out - golden["out"]).abs().max()


def test_hook_rewrites_c_where_it_is_formed(model, golden):
    seen = {}

    def hook(c, t_part, y_part):
        seen.update(c=c, sum=t_part + y_part)
        return torch.zeros_like(c)

    with torch.no_grad():
        out = model(golden["x"], golden["t"], golden["y"], hook)
        zero_c = model(golden["x"], golden["t"], golden["y"], lambda c, t_part, y_part: c * 0)
    assert torch.equal(seen["c"], seen["sum"]) and torch.allclose(seen["c"], golden["c"], **TOL)
    assert torch.equal(out, zero_c) and not torch.allclose(out, golden["out"], atol=1e-3)


def test_guided_output_with_power_cosine_schedule_matches_official(model, golden):
    adapter = adapter_for(model)
    y, steps = golden["guided_y"], adapter.sampler_steps
    scales = [adapter.guidance_scale(s) for s in range(steps)]
    assert scales[0] == 1.0 and scales[-1] == pytest.approx(META["cfg_scale"]) and scales == sorted(scales)
    assert adapter.describe()["sampler"]["scale_pow"] == META["scale_pow"]
    for step in range(steps):
        x = golden[f"guided_x_{step}"]
        t = adapter.sampler_timesteps()[step].expand(len(x))
        with torch.no_grad():
            ours = adapter._evaluate(x, t, y, PolicyHook(None, steps), step)
        assert_matches_official(ours, golden[f"guided_out_{step}"])


def test_sampler_final_latents_match_official(model, golden):
    adapter = adapter_for(model)
    labels = torch.tensor(META["sample_labels"])
    out = adapter.sample(labels, PairedNoise(META["noise_seed"], range(len(labels)))).samples
    ref = golden["samples"]
    # A random network predicts no eps resembling x, so ten DDPM steps leave latents of size ~10^2: the
    # absolute tolerance scales with them (1e-5 of the largest), which is float32 agreement all the same.
    assert ref.abs().max() > 10 and torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max())), \
        (out - ref).abs().max()


def test_baseline_policy_is_bit_identical_to_no_policy(model):
    adapter = adapter_for(model)
    labels = torch.tensor([1, 4, 9])

    def run(policy):
        return adapter.sample(labels, PairedNoise(5, range(3)), policy).samples

    plain = run(None)
    assert torch.equal(run(parse_policy("baseline")), plain)
    assert torch.equal(run(parse_policy("tail:0")), plain)
    assert not torch.equal(run(parse_policy("tail:0.2")), plain)


def test_dit_checkpoint_loaded_as_mdt_names_the_disagreeing_keys():
    dit = DiT(DiTConfig(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4, num_classes=10))
    with pytest.raises(CheckpointMismatchError) as error:
        load_strict(MDT(MDTConfig(**META["config"])), dit.state_dict(), "DiT-tiny.pt",
                    ignore_prefixes=MDT_TRAINING_ONLY_PREFIXES)
    message = str(error.value)
    assert "DiT-tiny.pt" in message and "missing keys: de_blocks.0." in message
    assert "unexpected keys: blocks.0." in message
    assert "shape mismatches: final_layer.adaLN_modulation.1.bias: file (64,) vs model (32,)" in message


def test_xl2_preset_matches_official_layout_on_meta_device():
    official = json.loads((FIXTURES / "xl2_keys.json").read_text())["keys"]
    with torch.device("meta"):
        net = MDT(MDT_XL_2)
    ours = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: v for k, v in official.items() if not k.startswith(MDT_TRAINING_ONLY_PREFIXES)}
    ignored = sorted(k for k in official if k.startswith(MDT_TRAINING_ONLY_PREFIXES))
    assert ignored[0] == "mask_token" and all(k.startswith("sideblocks.0.") for k in ignored[1:])
    assert all(p.is_meta for p in net.parameters())
    assert len(net.en_inblocks) == len(net.en_outblocks) == 12 and len(net.de_blocks) == 4


def test_embedders_only_load_leaves_the_rest_on_meta(model):
    with torch.device("meta"):
        net = MDT(MDTConfig(**META["config"]))
    state = load_state_dict(WEIGHTS, only_prefixes=MDT_EMBEDDER_PREFIXES)
    load_strict(net, state, str(WEIGHTS), only_prefixes=MDT_EMBEDDER_PREFIXES)
    t, y = torch.tensor([3, 900]), torch.tensor([2, 10])
    with torch.no_grad():
        assert torch.equal(sum(net.embed_parts(t, y)), sum(model.embed_parts(t, y)))
    assert net.en_inblocks[0].attn.qkv.weight.is_meta


def test_relative_position_index_matches_official_buffer():
    state = load_state_dict(WEIGHTS)
    assert torch.equal(relative_position_index(4), state["de_blocks.1.attn.rel_pos_bias.relative_position_index"])
