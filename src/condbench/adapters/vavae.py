"""VA-VAE f16d32, the decoder of LightningDiT (hustvl/LightningDiT ``tokenizer/``), through diffusers' Decoder.

VA-VAE has the LDM autoencoder architecture (``tokenizer/autoencoder.py``: ch 128, ch_mult (1, 1, 2, 2, 4),
2 res blocks, attention at 16x16, 32 latent channels). Its decoder is diffusers' ``Decoder`` with one
difference from SD's VAE: the lowest-resolution up level (16x16) also has attention, so that level is an
``AttnUpDecoderBlock2D``. The official file is an LDM state dict (``decoder.*``, ``post_quant_conv.*`` next
to the encoder, loss and foundation-model weights), converted here key by key.

LightningDiT samples normalised latents; images are ``decode(z * std / multiplier + mean)`` with the
channel statistics of ``latents_stats.pt`` (``{'mean', 'std'}``, each (1, 32, 1, 1)) and multiplier 1.0,
then mapped from [-1, 1] to [0, 1].
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..checkpoints import CheckpointError, load_state_dict, load_strict, require_file

VAVAE_REPO = "hustvl/vavae-imagenet256-f16d32-dinov2"
VAVAE_FILE = "vavae-imagenet256-f16d32-dinov2.pt"
LATENT_STATS_FILE = "latents_stats.pt"
DOWNLOAD_HINT = (f"download {{name}} from https://huggingface.co/{VAVAE_REPO}/blob/main/{{name}} "
                 "(the LightningDiT README links it) and pass its path")
DECODER_PREFIXES = ("decoder.", "post_quant_conv.")


@dataclass(frozen=True)
class VAVAEConfig:
    """The LDM ``ddconfig`` of the decoder; the defaults are VA-VAE f16d32 (``tokenizer/configs/vavae_f16d32.yaml``)."""

    z_channels: int = 32
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 256
    out_ch: int = 3

    def level_has_attention(self, level: int) -> bool:
        """Whether LDM up level ``level`` (0 = full resolution) works at a resolution with attention."""
        return self.resolution // 2 ** level in self.attn_resolutions

    def to_dict(self) -> dict:
        return asdict(self)


class VAVAEDecoderNet(nn.Module):
    """Latents (N, z, h, w) -> images (N, 3, sh, sw) in about [-1, 1], s = 2^(levels-1): post_quant_conv, decoder."""

    def __init__(self, config: VAVAEConfig = VAVAEConfig()):
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


def convert_ldm_decoder(state: dict[str, torch.Tensor], config: VAVAEConfig) -> dict[str, torch.Tensor]:
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

    def __init__(self, checkpoint: str | Path, latent_stats: str | Path, config: VAVAEConfig = VAVAEConfig(),
                 multiplier: float = 1.0, dtype: torch.dtype = torch.float32):
        self.checkpoint = Path(checkpoint)
        self.latent_stats = Path(latent_stats)
        self.config = config
        self.multiplier = multiplier
        self.dtype = dtype
        self._net: Optional[VAVAEDecoderNet] = None
        self._stats: Optional[tuple[torch.Tensor, torch.Tensor]] = None

    def load(self) -> VAVAEDecoderNet:
        """The decoder with the official weights (only ``decoder.*`` and ``post_quant_conv.*`` are read)."""
        if self._net is None:
            self._stats = load_latent_stats(self.latent_stats)
            path = require_file(self.checkpoint, "VA-VAE f16d32 checkpoint", DOWNLOAD_HINT.format(name=VAVAE_FILE))
            state = load_state_dict(path, key="state_dict", only_prefixes=DECODER_PREFIXES)
            net = VAVAEDecoderNet(self.config)
            load_strict(net, convert_ldm_decoder(state, self.config), source=str(path))
            self._net = net.to(self.dtype).eval()
        return self._net

    @torch.no_grad()
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        net = self.load().to(latents.device)
        mean, std = self._stats
        z = denormalize(latents.float(), mean, std, self.multiplier)
        images = net(z.to(self.dtype))  # (N, 3, H, W) in about [-1, 1]
        return ((images.float() + 1) / 2).clamp(0, 1)

    def describe(self) -> dict:
        return {"decoder": "VA-VAE f16d32 (diffusers Decoder)", "checkpoint": str(self.checkpoint),
                "latent_stats": str(self.latent_stats), "multiplier": self.multiplier, "dtype": str(self.dtype)}
