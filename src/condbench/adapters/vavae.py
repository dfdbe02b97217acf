"""VA-VAE f16d32, the decoder of LightningDiT (hustvl/LightningDiT ``tokenizer/``), through diffusers' Decoder.

VA-VAE has the LDM autoencoder architecture (``tokenizer/autoencoder.py``: ch 128, ch_mult (1, 1, 2, 2, 4),
2 res blocks, attention at 16x16, 32 latent channels). Its decoder is the LDM decoder of ``vae`` with one
difference from SD's VAE: the lowest-resolution up level (16x16) also has attention. The official file is
an LDM state dict (``decoder.*``, ``post_quant_conv.*`` next to the encoder, loss and foundation-model
weights), of which only the decoder's keys are read and converted.

LightningDiT samples normalised latents; images are ``decode(z * std / multiplier + mean)`` with the
channel statistics of ``latents_stats.pt`` (``{'mean', 'std'}``, each (1, 32, 1, 1)) and multiplier 1.0,
then mapped from [-1, 1] to [0, 1].
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..checkpoints import CheckpointError, load_state_dict, require_file
from .vae import LDM_DECODER_PREFIXES, LDMDecoderConfig, LDMDecoderNet, ldm_decoder_from_state, to_unit_range

VAVAE_REPO = "hustvl/vavae-imagenet256-f16d32-dinov2"
VAVAE_FILE = "vavae-imagenet256-f16d32-dinov2.pt"
LATENT_STATS_FILE = "latents_stats.pt"
DOWNLOAD_HINT = (f"download {{name}} from https://huggingface.co/{VAVAE_REPO}/blob/main/{{name}} "
                 "(the LightningDiT README links it) and pass its path")

# The LDM ``ddconfig`` of VA-VAE f16d32 (``tokenizer/configs/vavae_f16d32.yaml``)
VAVAE_F16D32 = LDMDecoderConfig(z_channels=32, ch=128, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=2,
                                attn_resolutions=(16,), resolution=256, out_ch=3)


def load_latent_stats(path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std), each (1, C, 1, 1), from LightningDiT's ``latents_stats.pt`` (a dict with keys 'mean', 'std')."""
    path = require_file(path, "LightningDiT latent statistics", DOWNLOAD_HINT.format(name=LATENT_STATS_FILE))
    stats = load_state_dict(path)
    if not {"mean", "std"} <= set(stats):
        raise CheckpointError(f"{path} holds keys {sorted(stats)}, expected 'mean' and 'std' (LightningDiT's "
                              f"{LATENT_STATS_FILE}, computed over ImageNet VA-VAE latents)")
    mean, std = (stats[k].float().reshape(1, -1, 1, 1) for k in ("mean", "std"))
    return mean, std


def denormalize(latents: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, multiplier: float = 1.0) -> torch.Tensor:
    """LightningDiT's sampled latents (N, C, h, w) -> VA-VAE latents: z * std / multiplier + mean."""
    return latents * std.to(latents) / multiplier + mean.to(latents)


class VAVAEDecoder:
    """Normalised LightningDiT latents (N, 32, h, w) -> images (N, 3, 16h, 16w) in [0, 1]; loads on first use."""

    def __init__(self, checkpoint: str | Path, latent_stats: str | Path, config: LDMDecoderConfig = VAVAE_F16D32,
                 multiplier: float = 1.0, dtype: torch.dtype = torch.float32):
        self.checkpoint = Path(checkpoint)
        self.latent_stats = Path(latent_stats)
        self.config = config
        self.multiplier = multiplier
        self.dtype = dtype
        self._net: Optional[LDMDecoderNet] = None
        self._stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def load(self) -> LDMDecoderNet:
        """The decoder with the official weights (only ``decoder.*`` and ``post_quant_conv.*`` are read)."""
        if self._net is None:
            self._stats = load_latent_stats(self.latent_stats)
            path = require_file(self.checkpoint, "VA-VAE f16d32 checkpoint", DOWNLOAD_HINT.format(name=VAVAE_FILE))
            state = load_state_dict(path, key="state_dict", only_prefixes=LDM_DECODER_PREFIXES)
            self._net = ldm_decoder_from_state(state, self.config, str(path)).to(self.dtype)
        return self._net

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        net = self.load().to(latents.device)
        mean, std = self._stats
        z = denormalize(latents.float(), mean, std, self.multiplier)
        return to_unit_range(net(z.to(self.dtype)))  # (N, 3, H, W)

    def describe(self) -> dict:
        return {"decoder": "VA-VAE f16d32 (diffusers Decoder)", "checkpoint": str(self.checkpoint),
                "latent_stats": str(self.latent_stats), "multiplier": self.multiplier, "dtype": str(self.dtype)}
