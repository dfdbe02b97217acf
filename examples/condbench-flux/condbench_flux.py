"""A condbench plugin: FLUX.1-schnell (black-forest-labs) through diffusers, a DiT-family model the study did not cover.

FLUX's transformer forms c like SD3's, ``temb = time_text_embed(t, pooled CLIP text)`` (timestep embedding + pooled
text projection), and every block reads it through ``Linear(SiLU(c))`` (adaLN-Zero). So the adapter is condbench's
SD3 adapter with FLUX's differences: latents packed into 2x2 patches with position ids, the timestep passed in
[0, 1], and FluxPipeline's schedule (sigmas linspace(1, 1/N, N), resolution-dependent shift when the scheduler says
so). FLUX.1-schnell is timestep-distilled: 4 steps, no classifier-free guidance. FLUX.1-dev (guidance embedded in c)
is refused. Install with ``pip install -e examples/condbench-flux``; ``condbench list models`` then shows it (its
registry entry is ``condbench_flux_entry.py``, which imports no torch).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import torch

from condbench.adapters.sd3 import (CachedPromptEncoder, PromptEmbeddingTable, SD3Adapter, folder_fingerprint,
                                    load_network, text_encoders_in_dtype)
from condbench.checkpoints import CheckpointNotFoundError
from condbench.hub import offline
from condbench.contract import ContractCase, randomize_
from condbench_flux_entry import REPO

PARTS = ("transformer", "vae", "scheduler")


class FluxPromptEncoder:
    """FluxPipeline.encode_prompt on the folder's CLIP-L and T5-XXL (loaded on first use), one prompt at a time."""

    def __init__(self, folder: Path, dtype: torch.dtype, max_sequence_length: int = 256):
        self.folder, self.dtype, self.max_sequence_length, self._pipe = folder, dtype, max_sequence_length, None

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._pipe is None:
            from diffusers import FluxPipeline

            self._pipe = FluxPipeline.from_pretrained(self.folder, transformer=None, vae=None, torch_dtype=self.dtype)
            text_encoders_in_dtype(self._pipe, self.dtype)
        pairs = [self._pipe.encode_prompt(p, max_sequence_length=self.max_sequence_length)[:2] for p in prompts]
        return torch.cat([e for e, _ in pairs]), torch.cat([p for _, p in pairs])  # (N, L, 4096), (N, 768)

    def identity(self) -> dict:
        return {"encoder": "FluxPipeline.encode_prompt", "max_sequence_length": self.max_sequence_length,
                "folder_files": folder_fingerprint(self.folder, ("text_encoder", "text_encoder_2")),
                "dtype": str(self.dtype)}


class FluxAdapter(SD3Adapter):
    """A FLUX.1-schnell pipeline seen through temb; ``cond`` is a list of N prompts; samples are unpacked latents."""

    family = "flux"

    def __init__(self, transformer: torch.nn.Module, vae: torch.nn.Module, scheduler, encoder, name: str = "flux",
                 **options: Any):
        if transformer.config.guidance_embeds:
            raise ValueError(f"{name}: a guidance-distilled FLUX (FLUX.1-dev) embeds the guidance scale in c too; "
                             "this adapter covers FLUX.1-schnell")
        super().__init__(transformer, vae, scheduler, encoder, name, **options)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the unpacked latents, as FluxPipeline.prepare_latents draws them."""
        side = 2 * self.vae_scale_factor
        return (self.transformer.config.in_channels // 4, 2 * (self.height // side), 2 * (self.width // side))

    @staticmethod
    def pack(x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, H/2 * W/2, 4C): 2x2 patches as tokens, FluxPipeline's _pack_latents."""
        n, c, h, w = x.shape
        return x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(n, (h // 2) * (w // 2), 4 * c)

    @staticmethod
    def unpack(tokens: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        n, c, h, w = shape
        return tokens.view(n, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(shape)

    def _transformer(self, latents: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor,
                     hook) -> torch.Tensor:
        """One transformer call as FluxPipeline makes it (timestep / 1000, image and text position ids)."""
        _, _, h, w = latents.shape
        rows, cols = torch.meshgrid(torch.arange(h // 2), torch.arange(w // 2), indexing="ij")
        img_ids = torch.stack([torch.zeros_like(rows), rows, cols], -1).reshape(-1, 3).to(self.device, self.dtype)
        txt_ids = torch.zeros(embeds.shape[1], 3, device=self.device, dtype=self.dtype)
        self._step_hook = hook
        try:
            out = self.transformer(hidden_states=self.pack(latents), timestep=timestep / 1000,
                                   encoder_hidden_states=embeds, pooled_projections=pooled, txt_ids=txt_ids,
                                   img_ids=img_ids, return_dict=False)[0]
        finally:
            self._step_hook = None
        return self.unpack(out, latents.shape)

    def _set_timesteps(self) -> torch.Tensor:
        """FluxPipeline's schedule: sigmas linspace(1, 1/N, N), shifted by mu of the token count if dynamic."""
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        config, (_, h, w) = self.scheduler.config, self.latent_shape
        mu = calculate_shift((h // 2) * (w // 2), config.get("base_image_seq_len", 256),
                             config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                             config.get("max_shift", 1.15)) if config.get("use_dynamic_shifting") else None
        sigmas = np.linspace(1.0, 1 / self.num_steps, self.num_steps)
        self.scheduler.set_timesteps(sigmas=sigmas, mu=mu, device=self.device)
        return self.scheduler.timesteps

    def describe(self) -> dict:
        description = super().describe()
        description["sampler"]["name"] = "flow-match Euler on FluxPipeline's schedule (condbench loop)"
        return description


def load_flux(ckpt: Optional[str] = None, device: str = "cpu", dtype: str = "bfloat16", max_sequence_length: int = 256,
              encoder: Any = None, **sampler: Any) -> FluxAdapter:
    """The adapter from a local FLUX.1-schnell diffusers folder (``ckpt``) or the Hugging Face cache."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    folder = Path(ckpt) if ckpt else _hub_folder()
    if not (folder / "transformer").is_dir():
        raise CheckpointNotFoundError(f"flux-schnell: {folder} is not a FLUX diffusers folder (no transformer/); "
                                      f"download https://huggingface.co/{REPO} and pass --ckpt FOLDER")
    torch_dtype = getattr(torch, dtype)
    transformer = load_network(FluxTransformer2DModel, folder, "transformer", torch_dtype)
    vae = load_network(AutoencoderKL, folder, "vae", torch_dtype)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(folder, subfolder="scheduler")
    encoder = encoder or CachedPromptEncoder(FluxPromptEncoder(folder, torch_dtype, max_sequence_length))
    checkpoint = {"repo": REPO, "path": str(folder.resolve()), "files_sha256": folder_fingerprint(folder, PARTS)}
    options = {"num_steps": 4, "cfg_scale": 1.0, **sampler}
    return FluxAdapter(transformer.to(device), vae, scheduler, encoder, "flux-schnell", checkpoint=checkpoint,
                       **options).to(device)


def _hub_folder() -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(REPO, local_files_only=offline()))
    except Exception as error:
        raise CheckpointNotFoundError(f"flux-schnell: {REPO} is not in the Hugging Face cache ({error.__class__.__name__}"
                                      f"); download https://huggingface.co/{REPO} and pass --ckpt FOLDER") from None


def tiny_folder(root: Path) -> Path:
    """A FLUX diffusers folder at a tiny size, every weight random: transformer, VAE (16x fewer channels), scheduler."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel

    torch.manual_seed(0)
    randomize_(FluxTransformer2DModel(in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
                                      num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                                      axes_dims_rope=(4, 4, 8))).save_pretrained(root / "transformer")
    randomize_(AutoencoderKL(latent_channels=4, block_out_channels=(4, 4), norm_num_groups=2, layers_per_block=1,
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             scaling_factor=0.3611, shift_factor=0.1159)).save_pretrained(root / "vae")
    FlowMatchEulerDiscreteScheduler(shift=1.0).save_pretrained(root / "scheduler")  # FLUX.1-schnell's (no shift)
    return root


def contract_case(ckpt: Optional[str] = None, model_config: Optional[dict] = None) -> ContractCase:
    """The contract's case: ``ckpt`` at 256x256, or the tiny random folder with a table of prompt embeddings."""
    prompts = ["a red cube", "a cat on a mat", "two boats"]
    if ckpt is not None:
        adapter = load_flux(ckpt, dtype="float32", num_steps=2, height=256, width=256)
        return ContractCase(adapter, prompts, (3, 256, 256), checkpoint=None)
    scratch = tempfile.TemporaryDirectory(prefix="condbench-flux-")
    generator = torch.Generator().manual_seed(0)
    table = PromptEmbeddingTable({p: (torch.randn(6, 32, generator=generator), torch.randn(32, generator=generator))
                                  for p in prompts})
    adapter = load_flux(str(tiny_folder(Path(scratch.name))), dtype="float32", encoder=table, num_steps=3,
                        height=16, width=16)
    return ContractCase(adapter, prompts, (3, 16, 16), scratch=scratch)

