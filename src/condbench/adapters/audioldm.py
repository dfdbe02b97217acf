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

from ..metrics.weight_files import AUDIOLDM_REPO

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
        """(vae, vocoder), read once (from a local folder, or the hub cache, downloading if online)."""
        if self._parts is None:
            from diffusers import AutoencoderKL
            from transformers import SpeechT5HifiGan

            try:
                vae = AutoencoderKL.from_pretrained(self.source, subfolder="vae", torch_dtype=self.dtype).eval()
                vocoder = SpeechT5HifiGan.from_pretrained(self.source, subfolder="vocoder",
                                                          torch_dtype=self.dtype).eval()
            except (OSError, ValueError) as error:
                raise FileNotFoundError(
                    f"AudioLDM decoder {self.source!r} could not be loaded ({str(error).splitlines()[0]}). MDSGen "
                    f"decodes with the VAE and vocoder of https://huggingface.co/{AUDIOLDM_REPO}: download it once "
                    "while online (it is then cached), or pass a local copy with model option decoder=/path/to/"
                    "audioldm-s-full-v2 (a folder holding vae/ and vocoder/, each with config.json and weights)."
                ) from None
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
