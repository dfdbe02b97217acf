"""U-ViT's decoder against the official ``FrozenAutoencoderKL`` (baofff/U-ViT ``libs/autoencoder.py``).

Fixture ``tests/fixtures/uvit/autoencoder.io.safetensors`` was made by ``tools/golden/make_uvit_autoencoder.py
--official <checkout of baofff/U-ViT> --commit ce551708dc9cde9818d2af7d84dfadfeb7bd9034``: a tiny official
autoencoder (ch 32, ch_mult (1, 2), one res block, attention in the middle block only, as ``get_model``
builds SD's KL-f8) with every parameter drawn at random from a recorded seed, the official
``decode`` of a latent batch and its ``unpreprocess`` to [0, 1]; the metadata also holds the key -> shape
layout of the released ``autoencoder_kl_ema.pth``. Comparisons are float32 with atol 1e-5, rtol 1e-5.
"""
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import condbench
from condbench.adapters.vae import (LDM_ENCODER_PREFIXES, SD_KL_F8, SD_VAE_SCALE, LDMDecoderConfig, LDMDecoderNet,
                                    SDVAEDecoder, UViTAutoencoderDecoder, convert_ldm_decoder, ldm_decoder_from_state)
from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError, file_sha256, load_strict

from .golden_weights import seeded_state, weights_sum

FIXTURE = Path(__file__).parent / "fixtures" / "uvit"
TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def golden() -> tuple[LDMDecoderConfig, dict, dict, dict]:
    """(config, official-layout state dict with the encoder, tensors, metadata)."""
    path = FIXTURE / "autoencoder.io.safetensors"
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    ddconfig = json.loads(meta["ddconfig"])
    config = LDMDecoderConfig(**{k: tuple(ddconfig[k]) if isinstance(ddconfig[k], list) else ddconfig[k]
                                 for k in LDMDecoderConfig.__dataclass_fields__})
    state = seeded_state(json.loads(meta["layout"]), int(meta["seed"]))
    assert weights_sum(state) == pytest.approx(float(meta["weights_sum"]), rel=1e-9), \
        "torch.randn no longer redraws the fixture"
    return config, state, load_file(str(path)), meta


@pytest.fixture
def official_file(golden, tmp_path) -> Path:
    """The tiny autoencoder saved as U-ViT ships ``autoencoder_kl_ema.pth``: a plain state dict, encoder included."""
    path = tmp_path / "autoencoder_kl_ema.pth"
    torch.save(golden[1], path)
    return path


def test_decoder_matches_official_decode(golden):
    config, state, io, meta = golden
    assert any(k.startswith("encoder.") for k in state) and "decoder.mid.attn_1.q.weight" in state
    net = ldm_decoder_from_state(state, config, "tiny U-ViT autoencoder", ignore_prefixes=LDM_ENCODER_PREFIXES)
    with torch.no_grad():
        decoded = net(io["latents"] * (1.0 / float(meta["scale_factor"])))
    torch.testing.assert_close(decoded, io["decoded"], **TOL)
    assert io["decoded"].abs().mean() > 0.1


def test_decoder_on_the_official_file_gives_the_official_images(golden, official_file):
    config, _, io, _ = golden
    decoder = UViTAutoencoderDecoder(official_file, config=config)
    images = decoder(io["latents"])
    assert images.shape == io["images"].shape == (3, 3, 16, 16)
    torch.testing.assert_close(images, io["images"], **TOL)
    clamped = (io["images"] == 0) | (io["images"] == 1)
    assert 0 < clamped.float().mean() < 0.5  # the [0, 1] clamp is exercised, most values are not clamped
    described = decoder.describe()
    assert described["checkpoint"] == str(official_file) and described["sha256"] == file_sha256(official_file)
    assert described["scale"] == SD_VAE_SCALE


def test_strict_loading_skips_only_the_encoder(golden, tmp_path):
    config, state, io, _ = golden
    path = tmp_path / "with_loss.pth"
    torch.save({**state, "loss.logvar": torch.zeros(())}, path)
    with pytest.raises(CheckpointMismatchError, match="unexpected keys: loss.logvar"):
        UViTAutoencoderDecoder(path, config=config).load()
    torch.save({k: v for k, v in state.items() if k != "post_quant_conv.bias"}, path)
    with pytest.raises(CheckpointMismatchError, match="missing keys: post_quant_conv.bias"):
        UViTAutoencoderDecoder(path, config=config).load()
    torch.save({k: v for k, v in state.items() if not k.startswith(LDM_ENCODER_PREFIXES)}, path)
    torch.testing.assert_close(UViTAutoencoderDecoder(path, config=config)(io["latents"]), io["images"], **TOL)


def test_missing_file_names_it_where_and_how(tmp_path):
    path = tmp_path / "autoencoder_kl_ema.pth"
    with pytest.raises(CheckpointNotFoundError) as error:
        UViTAutoencoderDecoder(path)(torch.zeros(1, 4, 2, 2))
    message = str(error.value)
    for part in ("autoencoder_kl_ema.pth", str(path), "by hand", "drive.google.com/drive/folders/", "decoder="):
        assert part in message, part


def test_released_config_fits_the_official_file_layout(golden):
    """SD_KL_F8 is ``get_model``'s ddconfig, and the full-size ``autoencoder_kl_ema.pth`` layout loads into it."""
    _, _, _, meta = golden
    released = json.loads(meta["released_ddconfig"])
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in SD_KL_F8.to_dict().items()} == \
        {k: released[k] for k in LDMDecoderConfig.__dataclass_fields__}
    layout = json.loads(meta["released_layout"])
    with torch.device("meta"):
        net = LDMDecoderNet(SD_KL_F8)
        state = {k: torch.empty(shape) for k, shape in layout.items()}
        load_strict(net, convert_ldm_decoder(state, SD_KL_F8), "autoencoder_kl_ema.pth layout",
                    ignore_prefixes=LDM_ENCODER_PREFIXES)
        images = net(torch.zeros(1, 4, 32, 32))
    assert images.shape == (1, 3, 256, 256)
    assert not any(".up_blocks." in k and ".attentions." in k for k in net.state_dict())


# --- through the registry -----------------------------------------------------------------------------------

def tiny_uvit(**options):
    weights = FIXTURE / "weights.safetensors"
    with safe_open(str(weights), framework="pt") as handle:
        config = json.loads(handle.metadata()["meta"])["config"]
    return condbench.load_adapter("uvit-h-2", ckpt=str(weights), model_config=config, **options)


def test_uvit_h_2_decodes_with_uvits_autoencoder_by_default(isolated_cache):
    adapter = tiny_uvit()
    described = adapter.decoder.describe()
    assert described["checkpoint"] == "autoencoder_kl_ema.pth" and "drive.google.com" in described["source"]
    with pytest.raises(CheckpointNotFoundError) as error:
        adapter.decode(torch.zeros(1, 4, 8, 8))
    message = str(error.value)
    for part in ("autoencoder_kl_ema.pth", str(isolated_cache / "weights"), "by hand",
                 "drive.google.com/drive/folders/", "decoder"):
        assert part in message, part


def test_uvit_h_2_decoder_option(golden, official_file, tmp_path):
    """A file is read as U-ViT's autoencoder, a folder as a diffusers AutoencoderKL; an object is used as is."""
    config, _, io, _ = golden
    from_file = tiny_uvit(decoder=str(official_file)).decoder
    assert isinstance(from_file, UViTAutoencoderDecoder) and from_file.checkpoint == official_file
    assert from_file.config == SD_KL_F8  # the released size; the tiny file would not fit it
    assert isinstance(tiny_uvit(decoder=str(tmp_path)).decoder, SDVAEDecoder)
    adapter = tiny_uvit(decoder=UViTAutoencoderDecoder(official_file, config=config))
    torch.testing.assert_close(adapter.decode(io["latents"]), io["images"], **TOL)
