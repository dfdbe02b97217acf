"""MDTv2 with its official sampler: DiT's DDPM (250 respaced steps, learned-range sigma, guidance on latent
channels [:3]) with MDT's power-cosine guidance schedule (``forward_with_cfg`` in ``masked_diffusion/models.py``).

The guidance scale at model timestep t (0..999, 999 = noise) is
``1 + (cfg_scale - 1) * (1 - cos(pi * (1 - t / 1000) ** scale_pow)) / 2``: no guidance at pure noise, the full
scale at t = 0. It is computed in float32 as the official code does, so early steps get exactly 1.0 (and run
the conditional branch alone). ``scripts/image_sample.py`` defaults: cfg_scale 3.8, scale_pow 4.
"""
from __future__ import annotations

import math

import torch

from .dit import DiTAdapter


def power_cosine_scale(cfg_scale: float, t: int | float | torch.Tensor, scale_pow: float,
                       diffusion_steps: int = 1000) -> float:
    """MDT's guidance scale at model timestep ``t`` (an integer, or a float timestep as MDSGen's DPM-Solver feeds),
    evaluated in float32 like the official code."""
    t = torch.as_tensor(t)
    t = t.to(torch.float32) if t.is_floating_point() else t  # an integer t stays int64: t / steps is float32 then
    ramp = (1 - torch.cos(((1 - t / diffusion_steps) ** scale_pow) * math.pi)) * 1 / 2  # float32 in [0, 1]
    return float((cfg_scale - 1) * ramp + 1)


class MDTAdapter(DiTAdapter):
    """An MDT network (:class:`~condbench.adapters.mdt_model.MDT`) with MDT's guided DDPM sampler."""

    family = "mdt"

    def __init__(self, model: torch.nn.Module, name: str = "mdt", *, num_steps: int = 250, cfg_scale: float = 3.8,
                 scale_pow: float = 4.0, diffusion_steps: int = 1000, **options):
        super().__init__(model, name, num_steps=num_steps, cfg_scale=cfg_scale, **options)
        self.scale_pow = scale_pow
        self.diffusion_steps = diffusion_steps

    def guidance_scale(self, step: int) -> float:
        """The power-cosine scale at the model timestep that sampling step ``step`` evaluates."""
        t = int(self.diffusion.timestep_map[self.diffusion.num_steps - 1 - step])
        return power_cosine_scale(self.cfg_scale, t, self.scale_pow, self.diffusion_steps)

    def sampler_description(self) -> dict:
        return {**super().sampler_description(), "guidance_schedule": "power-cosine", "scale_pow": self.scale_pow,
                "diffusion_steps": self.diffusion_steps}
