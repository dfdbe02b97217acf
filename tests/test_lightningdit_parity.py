"""Our LightningDiT against the official network (hustvl/LightningDiT, commit 2725fed, ``models/lightningdit.py``).

Fixture ``tests/fixtures/lightningdit/`` was written by
``python tools/golden/make_lightningdit.py --official /work/ref/LightningDiT`` (the official checkout at
that commit): tiny official models with every parameter re-drawn at random, saved with the official key
names, with the official c, forward and ``forward_with_cfg`` outputs; ``released`` has the released
model's options (RMSNorm, SwiGLU, RoPE, patch 1), ``variant`` the others (qk-norm, no shift, LayerNorm, GELU
MLP, no RoPE, patch 2, learned sigma). ``xl1_state_dict_layout.json`` is the key -> shape map of the full
official XL/1. ``vavae.io.safetensors`` is the official LDM decoder (``tokenizer/autoencoder.py``) of a tiny
VA-VAE on denormalised latents; its random weights are redrawn here from the recorded seed and layout.
Comparisons are float32 with atol 1e-5, rtol 1e-5.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from condbench.adapters.lightningdit_model import XL1_IMAGENET256, LightningDiT, LightningDiTConfig
from condbench.adapters.vae import LDMDecoderConfig, LDMDecoderNet, convert_ldm_decoder
from condbench.adapters.vavae import VAVAE_F16D32, VAVAEDecoder, denormalize, load_latent_stats
from condbench.checkpoints import CheckpointError, CheckpointMismatchError, CheckpointNotFoundError, load_strict

from .conftest import random_dit
from .golden_weights import seeded_state, weights_sum

FIXTURES = Path(__file__).parent / "fixtures" / "lightningdit"
TOL = dict(atol=1e-5, rtol=1e-5)


def load_fixture(name: str) -> tuple[LightningDiT, dict[str, torch.Tensor]]:
    path = FIXTURES / f"{name}.weights.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        config = LightningDiTConfig(**json.loads(handle.metadata()["config"]))
    model = LightningDiT(config).eval()
    load_strict(model, load_file(str(path)), source=str(path))
    return model, load_file(str(FIXTURES / f"{name}.io.safetensors"))


@pytest.mark.parametrize("name", ["released", "variant"])
def test_c_and_forward_match_official(name):
    model, io = load_fixture(name)
    with torch.no_grad():
        t_part, y_part = model.embed_parts(io["t"], io["y"])
        out = model(io["x"], io["t"], io["y"])
    torch.testing.assert_close(t_part + y_part, io["c"], **TOL)
    assert out.shape[1] == model.config.out_channels
    # the official forward drops the learned-sigma half; ours keeps it, like condbench's DiT
    torch.testing.assert_close(out[:, : model.config.in_channels], io["out"], **TOL)
    assert io["out"].abs().mean() > 0.1  # the fixture is not trivially zero


def test_guided_output_matches_official_forward_with_cfg():
    """The fixture's forward_with_cfg (scale 4, guidance on channels [:3] only for t >= 0.125) from our forward."""
    model, io = load_fixture("released")
    x, y = io["x_cfg"], io["y_cfg"]
    for tag, t_value in (("050", 0.5), ("010", 0.1)):
        with torch.no_grad():
            out = model(x, torch.full((len(x),), t_value), y)
        cond, uncond = out.chunk(2)
        guided = uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3]) if t_value >= 0.125 else cond[:, :3]
        expected = torch.cat([torch.cat([guided, guided]), out[:, 3:]], dim=1)
        torch.testing.assert_close(expected, io[f"cfg_out_t{tag}"], **TOL)


def test_identity_hook_is_bit_identical_and_hook_acts():
    model, io = load_fixture("released")
    seen = []

    def identity(c, t_part, y_part):
        seen.append(torch.equal(c, t_part + y_part))
        return c

    with torch.no_grad():
        plain = model(io["x"], io["t"], io["y"])
        hooked = model(io["x"], io["t"], io["y"], hook=identity)
        zeroed = model(io["x"], io["t"], io["y"], hook=lambda c, t_part, y_part: torch.zeros_like(c))
    assert seen == [True]
    assert torch.equal(plain, hooked)
    assert not torch.allclose(plain, zeroed, atol=1e-3)


def test_xl1_preset_has_the_official_state_dict_layout():
    layout = json.loads((FIXTURES / "xl1_state_dict_layout.json").read_text())["keys"]
    with torch.device("meta"):
        model = LightningDiT(XL1_IMAGENET256)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == layout
    assert sum(p.numel() for p in model.parameters()) == 675_256_736


def test_embedders_alone_load_into_a_meta_model():
    """How the analysis reads c: the network on the meta device, only the embedders loaded."""
    model, io = load_fixture("released")
    with torch.device("meta"):
        meta_model = LightningDiT(model.config)
    state = load_file(str(FIXTURES / "released.weights.safetensors"))
    load_strict(meta_model, state, source="released", only_prefixes=("t_embedder.", "y_embedder."))
    with torch.no_grad():
        t_part, y_part = meta_model.embed_parts(io["t"], io["y"])
    torch.testing.assert_close(t_part + y_part, io["c"], **TOL)
    assert meta_model.blocks[0].attn.qkv.weight.is_meta


def test_rope_tables_match_the_official_buffers():
    model, _ = load_fixture("released")
    official = load_file(str(FIXTURES / "released.weights.safetensors"))
    fresh = LightningDiT(model.config)  # buffers computed by our code, not loaded
    torch.testing.assert_close(fresh.feat_rope.freqs_cos, official["feat_rope.freqs_cos"], atol=1e-6, rtol=0)
    torch.testing.assert_close(fresh.feat_rope.freqs_sin, official["feat_rope.freqs_sin"], atol=1e-6, rtol=0)
    torch.testing.assert_close(fresh.pos_embed, official["pos_embed"], atol=1e-6, rtol=0)


def test_strict_loading_rejects_a_dit_state_dict():
    model, _ = load_fixture("released")
    dit_state = random_dit().state_dict()
    with pytest.raises(CheckpointMismatchError) as error:
        load_strict(model, dit_state, source="DiT-XL-2-256x256.pt")
    message = str(error.value)
    assert "DiT-XL-2-256x256.pt" in message
    assert "missing keys" in message and "mlp.w12" in message
    assert "unexpected keys" in message and "mlp.fc1" in message
    assert "shape mismatches" in message


def test_strict_loading_rejects_a_missing_rope_buffer():
    model, _ = load_fixture("released")
    state = load_file(str(FIXTURES / "released.weights.safetensors"))
    del state["feat_rope.freqs_sin"]
    with pytest.raises(CheckpointMismatchError, match="feat_rope.freqs_sin"):
        load_strict(model, state, source="truncated.safetensors")


# --- VA-VAE decoder --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vae_fixture():
    path = FIXTURES / "vavae.io.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    cfg = json.loads(meta["config"])
    config = LDMDecoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
    state = seeded_state(json.loads(meta["layout"]), int(meta["seed"]))
    assert weights_sum(state) == pytest.approx(float(meta["weights_sum"]), rel=1e-9), \
        "torch.randn no longer redraws the fixture"
    return config, state, load_file(str(path))


def test_vavae_decoder_matches_official(vae_fixture):
    config, state, io = vae_fixture
    net = LDMDecoderNet(config).eval()
    load_strict(net, convert_ldm_decoder(state, config), source="tiny VA-VAE")
    with torch.no_grad():
        images = net(denormalize(io["latents"], io["mean"], io["std"]))
    torch.testing.assert_close(images, io["images"], **TOL)
    assert io["images"].abs().mean() > 0.1


def test_vavae_decoder_end_to_end_from_official_files(vae_fixture, tmp_path):
    """A Lightning-style checkpoint ({'state_dict': encoder, decoder, loss, ...}) and latents_stats.pt on disk."""
    config, state, io = vae_fixture
    checkpoint = tmp_path / "vavae.pt"
    extra = {"encoder.conv_in.weight": torch.ones(2, 3, 3, 3), "loss.logvar": torch.zeros(()),
             "quant_conv.weight": torch.ones(8, 8, 1, 1)}
    torch.save({"state_dict": {**state, **extra}}, checkpoint)
    stats = tmp_path / "latents_stats.pt"
    torch.save({"mean": io["mean"], "std": io["std"]}, stats)
    decoder = VAVAEDecoder(checkpoint, stats, config=config)
    images = decoder(io["latents"])
    assert images.shape == io["images"].shape
    torch.testing.assert_close(images, ((io["images"] + 1) / 2).clamp(0, 1), **TOL)


def test_vavae_missing_files_and_wrong_keys_say_what_to_do(vae_fixture, tmp_path):
    config, state, io = vae_fixture
    with pytest.raises(CheckpointNotFoundError, match="latents_stats.pt.*\n.*huggingface.co/hustvl/vavae"):
        VAVAEDecoder(tmp_path / "vavae.pt", tmp_path / "latents_stats.pt", config=config).load()
    torch.save({"mean": io["mean"], "std": io["std"]}, tmp_path / "latents_stats.pt")
    with pytest.raises(CheckpointNotFoundError, match="vavae.pt.*\n.*vavae-imagenet256-f16d32-dinov2.pt"):
        VAVAEDecoder(tmp_path / "vavae.pt", tmp_path / "latents_stats.pt", config=config).load()
    torch.save({"avg": io["mean"]}, tmp_path / "bad_stats.pt")
    with pytest.raises(CheckpointError, match="'mean' and 'std'"):
        load_latent_stats(tmp_path / "bad_stats.pt")
    torch.save({"state_dict": {k: v for k, v in state.items() if "attn" not in k}}, tmp_path / "sd_vae.pt")
    with pytest.raises(CheckpointMismatchError, match="missing keys: .*attentions"):
        VAVAEDecoder(tmp_path / "sd_vae.pt", tmp_path / "latents_stats.pt", config=config).load()


def test_vavae_f16d32_layout():
    """The released decoder: 32 -> 512 channels at 16x16 with attention there, four 2x upsamplings to 256x256."""
    with torch.device("meta"):
        net = LDMDecoderNet(VAVAE_F16D32)
        images = net(torch.zeros(1, 32, 16, 16, device="meta"))
    assert images.shape == (1, 3, 256, 256)
    keys = net.state_dict()
    assert keys["decoder.conv_in.weight"].shape == (512, 32, 3, 3)
    assert keys["decoder.up_blocks.0.attentions.2.to_q.weight"].shape == (512, 512)
    assert not any(k.startswith("decoder.up_blocks.1.attentions") for k in keys)
