"""The SD-VAE decoder of latent models: DiT's scaling and [-1, 1] -> [0, 1] mapping on diffusers' AutoencoderKL."""
from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from condbench.adapters.vae import SD_VAE_EMA, SD_VAE_SCALE, SDVAEDecoder

from .test_audioldm_offline import condbench_offline_only  # noqa: F401  (CONDBENCH_OFFLINE alone, hub online)


@pytest.fixture(scope="module")
def tiny_vae_dir(tmp_path_factory):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=16)
    path = tmp_path_factory.mktemp("vae")
    vae.save_pretrained(path)
    return path


def test_decoder_matches_dits_decoding(tiny_vae_dir):
    latents = torch.randn(2, 4, 4, 4)
    images = SDVAEDecoder(str(tiny_vae_dir))(latents)
    vae = AutoencoderKL.from_pretrained(tiny_vae_dir).eval()
    with torch.no_grad():
        expected = vae.decode(latents / SD_VAE_SCALE).sample  # DiT's sample.py
    assert images.shape == (2, 3, 8, 8)
    assert torch.allclose(images, ((expected + 1) / 2).clamp(0, 1), atol=1e-6)
    assert 0 <= float(images.min()) and float(images.max()) <= 1


def test_missing_vae_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface.co/.*decoder=/path/to/vae"):
        SDVAEDecoder(str(tmp_path / "no-such-vae"))(torch.zeros(1, 4, 4, 4))


def test_offline_a_hub_vae_missing_from_the_cache_fails_without_the_network(condbench_offline_only):
    """CONDBENCH_OFFLINE=1 alone, the hub library imported online: the load stays local (the session's network
    guard fails the test on any connection) and the error says how to provide the decoder."""
    with pytest.raises(FileNotFoundError, match="stabilityai/sd-vae-ft-ema.*could not be loaded"):
        SDVAEDecoder(SD_VAE_EMA)(torch.zeros(1, 4, 4, 4))
