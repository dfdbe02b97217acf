"""Stable Diffusion's KL autoencoder as the decoder of latent DiT-family models (through diffusers).

DiT, SiT, REPA, MG and MDT sample 32x32x4 latents of ``stabilityai/sd-vae-ft-ema`` (DiT's ``sample_ddp.py``
default; ``sd-vae-ft-mse`` is the other choice) scaled by 0.18215; images are ``vae.decode(z / 0.18215)``,
mapped from [-1, 1] to [0, 1]. The VAE is loaded on first use, so analysis and sampling never need it.
"""
from __future__ import annotations

import torch

SD_VAE_SCALE = 0.18215
SD_VAE_EMA = "stabilityai/sd-vae-ft-ema"


class SDVAEDecoder:
    """Latents (N, 4, h, w) -> images (N, 3, 8h, 8w) in [0, 1]; ``source`` is a hub id or a local directory."""

    def __init__(self, source: str = SD_VAE_EMA, scale: float = SD_VAE_SCALE, dtype: torch.dtype = torch.float32):
        self.source = source
        self.scale = scale
        self.dtype = dtype
        self._vae = None

    def load(self):
        """The diffusers ``AutoencoderKL``, read once (from the hub cache, downloading it if online)."""
        if self._vae is None:
            from diffusers import AutoencoderKL

            try:
                self._vae = AutoencoderKL.from_pretrained(self.source, torch_dtype=self.dtype).eval()
            except (OSError, ValueError) as error:
                raise FileNotFoundError(
                    f"VAE decoder {self.source!r} could not be loaded ({str(error).splitlines()[0]}). It is published "
                    f"at https://huggingface.co/{self.source}: download it once while online (it is then cached), or "
                    "pass a local diffusers directory with model option decoder=/path/to/vae "
                    "(a folder holding config.json and diffusion_pytorch_model.safetensors).") from None
        return self._vae

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.load().to(latents.device)
        images = vae.decode((latents / self.scale).to(self.dtype)).sample  # (N, 3, H, W) in about [-1, 1]
        return ((images.float() + 1) / 2).clamp(0, 1)

    def describe(self) -> dict:
        return {"decoder": "AutoencoderKL", "source": self.source, "scale": self.scale, "dtype": str(self.dtype)}
