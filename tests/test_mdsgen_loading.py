"""MDSGen through the registry (official-layout file, Drive-only message, embedders only) and its AudioLDM decoder
on tiny random AutoencoderKL + SpeechT5HifiGan saved in the pipeline's folder layout."""
from pathlib import Path

import pytest
import torch

import condbench
from condbench.adapters.audioldm import AudioLDMDecoder
from condbench.checkpoints import CheckpointMismatchError, CheckpointNotFoundError
from condbench.registry import model_entry

from .test_mdsgen_parity import CONFIG, inputs, official_state

# AudioLDM's vocoder upsampling (5 * 4 * 2 * 2 * 2 = 160 samples per mel frame), tiny channels
VOCODER = dict(model_in_dim=64, sampling_rate=16000, upsample_initial_channel=64, upsample_rates=[5, 4, 2, 2, 2],
               upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]],
               normalize_before=False)


@pytest.fixture(scope="module")
def audioldm_folder(tmp_path_factory) -> Path:
    """A folder in the AudioLDM pipeline's layout (vae/, vocoder/) holding tiny random components."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

    root = tmp_path_factory.mktemp("audioldm")
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=1, out_channels=1, latent_channels=8, block_out_channels=(4, 4, 8),
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        layers_per_block=1, norm_num_groups=2, sample_size=64)
    vae.save_pretrained(root / "vae")
    SpeechT5HifiGan(SpeechT5HifiGanConfig(**VOCODER)).save_pretrained(root / "vocoder")
    return root


def test_decode_gives_16k_waveforms_of_the_length_mdsgen_writes(audioldm_folder):
    decoder = AudioLDMDecoder(audioldm_folder)
    latents = torch.randn(2, 8, 204, 16, generator=torch.Generator().manual_seed(1))
    wav = decoder(latents)
    assert wav.shape == (2, 130592) and wav.dtype == torch.float32  # 816 mel frames (WAVE2.md 2.5)
    assert float(wav.abs().max()) <= 1.0 and float(wav.std()) > 0
    assert decoder.scale_factor() == 4 and decoder.sample_rate == 16000


def test_decode_is_what_mdsgen_inference_computes(audioldm_folder):
    """inference.py: mels = vae.decode(samples / pipe.vae_scale_factor).sample; wav = vocoder(mels.squeeze())."""
    from diffusers import AutoencoderKL
    from transformers import SpeechT5HifiGan

    vae = AutoencoderKL.from_pretrained(audioldm_folder / "vae").eval()
    vocoder = SpeechT5HifiGan.from_pretrained(audioldm_folder / "vocoder").eval()
    latents = torch.randn(1, 8, 204, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        scale = 2 ** (len(vae.config.block_out_channels) - 1)  # diffusers' AudioLDMPipeline.vae_scale_factor
        reference = vocoder(vae.decode(latents / scale).sample.squeeze())  # (L,) for one sample
    assert vae.config.scaling_factor != scale  # the pipeline's own decode_latents would divide by another number
    ours = AudioLDMDecoder(audioldm_folder)(latents)
    assert torch.allclose(ours[0], reference, atol=1e-6)


def test_missing_decoder_names_the_hub_repo_and_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="(?s)cvssp/audioldm-s-full-v2.*decoder=/path/to/audioldm-s-full-v2"):
        AudioLDMDecoder(tmp_path / "nowhere")(torch.zeros(1, 8, 204, 16))


def test_registry_entry_loads_the_official_layout_and_explains_the_drive_only_file(tmp_path, monkeypatch,
                                                                                 audioldm_folder):
    monkeypatch.setenv("CONDBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "mdsgen_audioldm.pt"
    torch.save(official_state(), path)  # a raw state dict with the side block and mask token, as released
    config = {k: v for k, v in CONFIG.to_dict().items() if k in ("hidden_size", "depth", "num_heads", "decode_layer")}
    adapter = condbench.load_adapter("mdsgen-b-2", ckpt=str(path), model_config=config, num_steps=4,
                                     decoder=str(audioldm_folder))
    _, feats = inputs(2)
    parts = adapter.embed_parts(feats, 999.0)
    assert parts.c.shape == (2, 32) and torch.equal(parts.c, parts.t + parts.cond)
    info = adapter.describe()
    assert info["sampler"]["cfg_scale"] == 5.0 and info["sampler"]["scale_pow"] == 0.01
    assert info["sampler"]["name"] == "dpm-solver++ multistep" and info["decoder"]["source"] == str(audioldm_folder)
    assert adapter.sample_rate == 16000
    light = condbench.load_adapter("mdsgen-b-2", ckpt=str(path), model_config=config, embedders_only=True)
    assert torch.equal(light.embed(feats, 999.0), parts.c)
    with pytest.raises(CheckpointNotFoundError,
                       match="(?s)mdsgen_audioldm.pt.*download it by hand.*drive.google.com.*--ckpt"):
        condbench.load_adapter("mdsgen-b-2")
    assert model_entry("mdsgen-b-2").task == "audio" and model_entry("mdsgen-b-2").c_dim == 768


def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    from condbench.adapters.dit_model import DiT, DiTConfig

    path = tmp_path / "DiT-XL-2-256x256.pt"
    torch.save(DiT(DiTConfig(input_size=8, hidden_size=32, depth=2, num_heads=4)).state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="DiT-XL-2-256x256.pt does not fit MDSGen"):
        condbench.load_adapter("mdsgen-b-2", ckpt=str(path), model_config={"hidden_size": 32, "depth": 2,
                                                                            "num_heads": 4, "decode_layer": 1})
