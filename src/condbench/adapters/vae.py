"""Stable Diffusion's KL autoencoder as the decoder of latent DiT-family models, in two layouts.

DiT, SiT, REPA, MG and MDT sample 32x32x4 latents of ``stabilityai/sd-vae-ft-ema`` (DiT's ``sample_ddp.py``
default; ``sd-vae-ft-mse`` is the other choice) scaled by 0.18215; images are ``vae.decode(z / 0.18215)``,
mapped from [-1, 1] to [0, 1] (:class:`SDVAEDecoder`, a diffusers folder or hub id).

Files in the original LDM (CompVis ``ldm/modules/diffusionmodules/model.py``) layout, such as U-ViT's
``autoencoder_kl_ema.pth`` and VA-VAE's checkpoint, are converted key by key onto diffusers' ``Decoder``
(:class:`LDMDecoderNet`, :func:`convert_ldm_decoder`); :class:`UViTAutoencoderDecoder` decodes with U-ViT's file.
Decoders load on first use, so analysis and sampling never need them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..checkpoints import file_sha256, load_state_dict, load_strict, require_file
from ..hub import local_files_only
from .catalogue import UVIT_AUTOENCODER_FILE, UVIT_AUTOENCODER_URL

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
                self._vae = AutoencoderKL.from_pretrained(self.source, torch_dtype=self.dtype,
                                                          local_files_only=local_files_only()).eval()
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
        return to_unit_range(images)

    def describe(self) -> dict:
        return {"decoder": "AutoencoderKL", "source": self.source, "scale": self.scale, "dtype": str(self.dtype)}


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Decoder output in about [-1, 1] -> [0, 1], clamped (DiT's and U-ViT's ``unpreprocess`` alike)."""
    return ((images.float() + 1) / 2).clamp(0, 1)


@dataclass(frozen=True)
class LDMDecoderConfig:
    """The LDM ``ddconfig`` of a KL autoencoder's decoder; the defaults are SD's KL-f8, as U-ViT builds it
    (``libs/autoencoder.py`` ``get_model``: attention only in the middle block)."""

    z_channels: int = 4
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = ()
    resolution: int = 256
    out_ch: int = 3

    def level_has_attention(self, level: int) -> bool:
        """Whether LDM up level ``level`` (0 = full resolution) works at a resolution with attention."""
        return self.resolution // 2 ** level in self.attn_resolutions

    def to_dict(self) -> dict:
        return asdict(self)


SD_KL_F8 = LDMDecoderConfig()
LDM_DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


class LDMDecoderNet(nn.Module):
    """Latents (N, z, h, w) -> images (N, 3, sh, sw) in about [-1, 1], s = 2^(levels-1): post_quant_conv, decoder.

    diffusers' ``Decoder`` is the LDM decoder; an up level with attention (VA-VAE's 16x16) is an
    ``AttnUpDecoderBlock2D``."""

    def __init__(self, config: LDMDecoderConfig = SD_KL_F8):
        super().__init__()
        from diffusers.models.autoencoders.vae import Decoder

        self.config = config
        levels = len(config.ch_mult)
        up_types = tuple("AttnUpDecoderBlock2D" if config.level_has_attention(level) else "UpDecoderBlock2D"
                         for level in reversed(range(levels)))  # diffusers orders up blocks lowest resolution first
        self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, 1)
        self.decoder = Decoder(in_channels=config.z_channels, out_channels=config.out_ch, up_block_types=up_types,
                               block_out_channels=tuple(config.ch * m for m in config.ch_mult),
                               layers_per_block=config.num_res_blocks, norm_num_groups=32, act_fn="silu")

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(z))


def _attention_keys(src: str, dst: str, state: dict[str, torch.Tensor], out: dict[str, torch.Tensor]) -> None:
    """LDM AttnBlock (1x1 convs q, k, v, proj_out; norm) -> diffusers Attention (linears; group_norm)."""
    for old, new in (("norm", "group_norm"), ("q", "to_q"), ("k", "to_k"), ("v", "to_v"), ("proj_out", "to_out.0")):
        for kind in ("weight", "bias"):
            tensor = state[f"{src}.{old}.{kind}"]
            out[f"{dst}.{new}.{kind}"] = tensor.flatten(1) if kind == "weight" and old != "norm" else tensor


def convert_ldm_decoder(state: dict[str, torch.Tensor], config: LDMDecoderConfig) -> dict[str, torch.Tensor]:
    """The ``decoder.*`` and ``post_quant_conv.*`` keys of an LDM autoencoder state dict in diffusers' layout.

    Keys of the LDM layout that the config does not expect are reported, not dropped, by the strict load
    that follows (they are passed through unchanged).
    """
    levels = len(config.ch_mult)
    renames = {"decoder.norm_out.": "decoder.conv_norm_out.", "decoder.mid.block_1.": "decoder.mid_block.resnets.0.",
               "decoder.mid.block_2.": "decoder.mid_block.resnets.1."}
    for level in range(levels):
        dst = f"decoder.up_blocks.{levels - 1 - level}."
        renames[f"decoder.up.{level}.upsample.conv."] = dst + "upsamplers.0.conv."
        for j in range(config.num_res_blocks + 1):
            renames[f"decoder.up.{level}.block.{j}."] = dst + f"resnets.{j}."
    attention = {"decoder.mid.attn_1": "decoder.mid_block.attentions.0"}
    for level in range(levels):
        for j in range(config.num_res_blocks + 1):
            attention[f"decoder.up.{level}.attn.{j}"] = f"decoder.up_blocks.{levels - 1 - level}.attentions.{j}"

    out: dict[str, torch.Tensor] = {}
    for src, dst in attention.items():
        if f"{src}.q.weight" in state:
            _attention_keys(src, dst, state, out)
    for key, tensor in state.items():
        if any(key.startswith(src + ".") for src in attention):
            continue
        new = key.replace(".nin_shortcut.", ".conv_shortcut.")
        for old, replacement in renames.items():
            if new.startswith(old):
                new = replacement + new[len(old):]
                break
        out[new] = tensor
    return out


def ldm_decoder_from_state(state: dict[str, torch.Tensor], config: LDMDecoderConfig, source: str,
                           ignore_prefixes: tuple[str, ...] = ()) -> LDMDecoderNet:
    """The decoder of an LDM autoencoder state dict, loaded strictly (``ignore_prefixes`` are skipped by name)."""
    net = LDMDecoderNet(config)
    load_strict(net, convert_ldm_decoder(state, config), source=source, ignore_prefixes=ignore_prefixes)
    return net.eval()


UVIT_AUTOENCODER_HINT = (f"download {UVIT_AUTOENCODER_FILE} by hand from the `stable-diffusion` folder on Google Drive "
                         f"that U-ViT's README links ({UVIT_AUTOENCODER_URL}) and pass it with model option "
                         f"decoder=/path/to/{UVIT_AUTOENCODER_FILE}")
LDM_ENCODER_PREFIXES = ("encoder.", "quant_conv.")  # the encoder half of the file: never used to decode


class UViTAutoencoderDecoder:
    """Latents (N, 4, h, w) -> images (N, 3, 8h, 8w) in [0, 1] with U-ViT's ``autoencoder_kl_ema.pth``.

    The file is SD's KL-f8 autoencoder converted by U-ViT's authors: a plain ``FrozenAutoencoderKL`` state
    dict in the LDM layout (``libs/autoencoder.py``). Decoding follows ``FrozenAutoencoderKL.decode`` and the
    dataset's ``unpreprocess``: ``decoder(post_quant_conv(z * (1 / 0.18215)))``, then ``0.5 * (x + 1)``
    clamped to [0, 1]. The encoder's keys are skipped by name; every other key must fit. (U-ViT's
    ``eval_ldm_discrete.py`` decodes under CUDA autocast; condbench decodes in ``dtype``, float32 by default.)
    """

    def __init__(self, checkpoint: str | Path, config: LDMDecoderConfig = SD_KL_F8, scale: float = SD_VAE_SCALE,
                 dtype: torch.dtype = torch.float32):
        self.checkpoint = Path(checkpoint)
        self.config = config
        self.scale = scale
        self.dtype = dtype
        self._net: Optional[LDMDecoderNet] = None
        self._sha256: Optional[str] = None

    def _file(self) -> Path:
        return require_file(self.checkpoint, f"U-ViT's autoencoder ({UVIT_AUTOENCODER_FILE})", UVIT_AUTOENCODER_HINT)

    def load(self) -> LDMDecoderNet:
        """The decoder with the file's weights, read once."""
        if self._net is None:
            path = self._file()
            net = ldm_decoder_from_state(load_state_dict(path), self.config, str(path),
                                         ignore_prefixes=LDM_ENCODER_PREFIXES)
            self._net = net.to(self.dtype)
        return self._net

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        net = self.load().to(latents.device)
        z = latents * (1.0 / self.scale)  # (N, 4, h, w); FrozenAutoencoderKL.decode multiplies by the reciprocal
        return to_unit_range(net(z.to(self.dtype)))  # (N, 3, 8h, 8w)

    def describe(self) -> dict:
        """The file and its SHA-256 (hashed once, on first description), the config, scale and dtype."""
        if self._sha256 is None:
            self._sha256 = file_sha256(self._file())
        return {"decoder": "U-ViT autoencoder (LDM KL, diffusers Decoder)", "checkpoint": str(self.checkpoint),
                "sha256": self._sha256, "config": self.config.to_dict(), "scale": self.scale,
                "dtype": str(self.dtype)}
