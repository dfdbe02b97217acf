"""AudioLDM's VAE and HiFi-GAN vocoder as MDSGen's decoder: latents -> log-mel spectrogram -> 16 kHz waveform.

MDSGen's ``inference.py`` loads ``AudioLDMPipeline.from_pretrained("cvssp/audioldm-s-full-v2")`` and uses only
its VAE and vocoder: ``mels = vae.decode(samples / pipe.vae_scale_factor).sample`` (``vae_scale_factor`` =
2 ** (len(vae.config.block_out_channels) - 1) = 4 for AudioLDM's VAE; not ``vae.config.scaling_factor``, which
the pipeline's own ``decode_latents`` would use), then ``wav = vocoder(mels.squeeze())``. The components load
here without the pipeline, from the repository's ``vae`` and ``vocoder`` subfolders (diffusers
``AutoencoderKL``, transformers ``SpeechT5HifiGan``). 8.16 s of latents (8, 204, 16) give mels (1, 816, 64) and
130,592 samples.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..hub import local_files_only
from ..metrics.weight_files import AUDIOLDM_REPO, audioldm_not_found, require_audioldm

SAMPLE_RATE = 16000


class AudioLDMDecoder:
    """Latents (N, 8, h, w) -> waveforms (N, L) in [-1, 1] at :attr:`sample_rate`; loads on first use.

    ``source`` is a hub id or a local folder holding ``vae/`` and ``vocoder/`` (the pipeline's layout).
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, source: str | Path = AUDIOLDM_REPO, dtype: torch.dtype = torch.float32):
        self.source, self.dtype = str(source), dtype
        self._parts = None

    def load(self):
        """(vae, vocoder), read once (from a local folder, or the hub cache, downloading only when not offline:
        offline, the hub is never asked, whatever the hub library read from the environment at its import)."""
        if self._parts is None:
            require_audioldm(self.source)  # a folder without its parts, or offline and not cached: said at once
            from diffusers import AutoencoderKL
            from transformers import SpeechT5HifiGan

            local_only = local_files_only()
            try:
                vae = AutoencoderKL.from_pretrained(self.source, subfolder="vae", torch_dtype=self.dtype,
                                                    local_files_only=local_only).eval()
                vocoder = SpeechT5HifiGan.from_pretrained(self.source, subfolder="vocoder", torch_dtype=self.dtype,
                                                          local_files_only=local_only).eval()
            except (OSError, ValueError) as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
                raise audioldm_not_found(f"{self.source!r} could not be loaded ({reason}"
                                         f"{'; offline: no download attempted' if local_only else ''})") from None
            if vocoder.config.sampling_rate != self.sample_rate:
                raise ValueError(f"{self.source}: the vocoder makes {vocoder.config.sampling_rate} Hz sound, "
                                 f"MDSGen's decoder is AudioLDM's {self.sample_rate} Hz one")
            self._parts = (vae, vocoder)
        return self._parts

    def scale_factor(self) -> int:
        """MDSGen's latent divisor, the pipeline's ``vae_scale_factor``: 2 ** (levels - 1) (4 for AudioLDM)."""
        vae, _ = self.load()
        return 2 ** (len(vae.config.block_out_channels) - 1)

    @torch.no_grad()
    def mels(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (N, 8, h, w) -> log-mel spectrograms (N, 4h, 4w) (frames, mel bins)."""
        vae, _ = self.load()
        vae.to(latents.device)
        return vae.decode((latents / self.scale_factor()).to(self.dtype)).sample[:, 0]  # (N, 1, T, M) -> (N, T, M)

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        _, vocoder = self.load()
        mels = self.mels(latents)
        return vocoder.to(mels.device)(mels).float()  # (N, L)

    def describe(self) -> dict:
        return {"decoder": "AudioLDM VAE + SpeechT5HifiGan vocoder", "source": self.source,
                "latent_divisor": "vae_scale_factor = 2 ** (levels - 1) (4), as MDSGen's inference.py",
                "sample_rate": self.sample_rate, "dtype": str(self.dtype)}
