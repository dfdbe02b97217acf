"""Adapter for class-conditional DiT networks sampled with DiT's DDPM sampler.

The sampler is DiT's ``sample.py``: respaced DDPM (250 steps by default), learned-range sigma and
classifier-free guidance on the first ``cfg_channels`` output channels, where the other channels (and the
variance) come from the conditional branch. Guidance runs both branches in one batch ``[cond; uncond]``;
the policy hook sees that batch and is told which rows belong to which branch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ..checkpoints import file_sha256, load_state_dict, load_strict, read_metadata
from ..policies import BRANCH_COND, BRANCH_UNCOND, Policy
from ..seeding import PairedNoise
from .base import Adapter, EmbeddingParts, PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .ddpm import GaussianDiffusion
from .dit_model import DiT, DiTConfig

def pixels_from_model_space(x: torch.Tensor) -> torch.Tensor:
    """Pixel-space models generate in [-1, 1]; outputs are images in [0, 1]."""
    return ((x.clamp(-1, 1) + 1) / 2).float()

class DiTAdapter(Adapter):
    """A DiT network with DiT's DDPM sampler; ``decoder`` maps samples to images (a VAE for latent models)."""

    condition_kind = "class"

    def __init__(self, model: DiT, name: str = "dit", *, num_steps: int = 250, cfg_scale: float = 1.5,
                 cfg_channels: Optional[int] = 3, decoder: Callable[[torch.Tensor], torch.Tensor] = pixels_from_model_space,
                 checkpoint: Optional[dict] = None):
        self.model = model.eval()
        self.name = name
        self.num_steps = num_steps
        self.cfg_scale = cfg_scale
        self.cfg_channels = cfg_channels
        self.decoder = decoder
        self.checkpoint = checkpoint or {}
        self.diffusion = GaussianDiffusion.dit(num_steps)
        self.denoiser_evaluations = 0  # network rows evaluated by sample(), for cost accounting
        if cfg_scale != 1.0 and model.config.class_dropout_prob <= 0:
            raise ValueError(f"{name}: cfg_scale {cfg_scale} needs a null class row, but the model has none")

    @property
    def config(self) -> DiTConfig:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def embed_dim(self) -> int:
        return self.config.hidden_size

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    def to(self, device: torch.device | str) -> "DiTAdapter":
        self.model.to(device)
        return self

    def _batch_t(self, t: torch.Tensor | float, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device)
        return t.expand(n) if t.dim() == 0 else t.to(self.device)

    @torch.no_grad()
    def embed_parts(self, cond: torch.Tensor, t: torch.Tensor | float) -> EmbeddingParts:
        y = cond.to(self.device)
        t_part, y_part = self.model.embed_parts(self._batch_t(t, len(y)), y)
        return EmbeddingParts(c=t_part + y_part, t=t_part, cond=y_part)

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, hook=None) -> torch.Tensor:
        return self.model(x.to(self.device), self._batch_t(t, len(x)), cond.to(self.device), hook)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t_embedder(t) + mean class embedding (c is linear in y, so this is the mean c over classes)."""
        table = self.model.y_embedder.embedding_table.weight[: self.num_classes]  # (K, D)
        return self.model.t_embedder(self._batch_t(t, 1)[:1]) + table.mean(0, keepdim=True)

    def sampler_timesteps(self) -> torch.Tensor:
        return torch.from_numpy(self.diffusion.timestep_map[::-1].copy())

    @property
    def sampler_steps(self) -> int:
        return self.diffusion.num_steps

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def _guide(self, out: torch.Tensor, n: int) -> torch.Tensor:
        """[cond; uncond] outputs (2N, C, H, W) -> guided output (N, C, H, W) on the first cfg_channels."""
        g = out.shape[1] // 2 if self.cfg_channels is None else self.cfg_channels
        cond, uncond = out[:n], out[n:]
        guided_eps = uncond[:, :g] + self.cfg_scale * (cond[:, :g] - uncond[:, :g])
        return torch.cat([guided_eps, cond[:, g:]], dim=1)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        y = cond.to(self.device)
        n, cfg = len(y), self.config
        if len(noise) != n:
            raise ValueError(f"{n} conditions but noise for {len(noise)} samples")
        shape = (cfg.in_channels, cfg.input_size, cfg.input_size)
        num_steps = self.diffusion.num_steps
        x = noise.draw(shape).to(self.device)  # (N, C, H, W)
        first = 0
        if start is not None:  # continue a trajectory that is identical up to start.step
            if policy is not None and any(policy.active(s, num_steps) for s in range(start.step)):
                raise ValueError(f"policy {policy.canonical()} acts before step {start.step}: it cannot share that prefix")
            noise.skip(shape, start.step)
            x, first = start.x.to(self.device), start.step
        hooks = PolicyHook(policy, num_steps, reference=self.mean_embedding, first_step=first)
        states = {}
        if self.guided:
            y_in = torch.cat([y, torch.full_like(y, self.num_classes)])
            branch = torch.cat([torch.full((n,), BRANCH_COND), torch.full((n,), BRANCH_UNCOND)]).to(self.device)
        for step in range(first, num_steps):
            if step in keep_states:
                states[step] = SamplerState(step, x.clone())
            steps = torch.full((n,), num_steps - 1 - step, device=self.device, dtype=torch.long)
            t = self.diffusion.model_timesteps(steps)
            if self.guided:
                out = self.model(torch.cat([x, x]), torch.cat([t, t]), y_in, hooks.at(step, t, branch))
                out = self._guide(out, n)
            else:
                out = self.model(x, t, y, hooks.at(step, t))
            self.denoiser_evaluations += 2 * n if self.guided else n
            x = self.diffusion.p_step(out, x, steps, noise.draw(shape).to(self.device))
            if progress is not None:
                progress(step + 1, num_steps)
        return SampleOutput(x, hooks.trace, states)

    def evaluations_per_step(self) -> int:
        return 2 if self.guided else 1

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        return self.decoder(samples)

    def describe(self) -> dict:
        return {"adapter": self.name, "family": "dit", "model_config": self.config.to_dict(),
                "sampler": {"name": "ddpm", "num_steps": self.num_steps, "cfg_scale": self.cfg_scale,
                            "cfg_channels": self.cfg_channels, "learned_sigma": self.config.learn_sigma},
                "checkpoint": self.checkpoint}

def load_dit(path: str | Path, config: Optional[DiTConfig] = None, state_key: Optional[str] = None,
             ignore_prefixes: tuple = ()) -> tuple[DiT, dict]:
    """Build a DiT from ``config`` (or the file's own metadata) and load the file strictly."""
    path = Path(path)
    if config is None:
        meta = read_metadata(path)
        if "config" not in meta:
            raise ValueError(f"{path} carries no model config in its metadata; pass the model size explicitly")

        config = DiTConfig(**json.loads(meta["config"]))
    model = DiT(config)
    load_strict(model, load_state_dict(path, key=state_key), source=str(path), ignore_prefixes=ignore_prefixes)
    return model, {"path": str(path.resolve()), "sha256": file_sha256(path)}
