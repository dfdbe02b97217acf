"""MDSGen (triton99/MDSGen) with its own sampler, as ``inference.py`` runs it: video features -> 8.16 s of sound.

The official call is ``DPM_Solver(model_wrapper(model_forward, NoiseScheduleVP('discrete', betas),
model_type='noise'), ns, algorithm_type='dpmsolver++').sample(z, steps=50, order=2, skip_type='time_uniform',
method='multistep')``: DPM-Solver++ 2M over 51 time-uniform points from 1 to 1/1000 on the linear betas
1e-4..0.02 (1000 steps, float64), the network seeing float timesteps (t - 1/1000) * 1000 = 999, 979.02, ...,
19.98. Guidance is ``forward_with_cfg``: two forwards per step (the null condition zeroes the video part of c),
``uncond + s(t) * (cond - uncond)`` with MDT's power-cosine scale (cfg 5, pow 0.01: 4.956 at t = 999, about 5
after), and the first 8 of the 16 output channels are the noise prediction.

A condbench step is one solver evaluation (50). The multistep solver carries the previous data prediction, so
a kept state is ``[x; m_prev]`` stacked on the channel axis, (N, 16, 204, 16) (m_prev is zero at step 0); a
run started from it continues the uninterrupted trajectory exactly.

``cond`` is a FloatTensor (N, 32, 512) of CAVP features (:mod:`condbench.adapters.cavp`); ``decode`` gives
waveforms (N, 130592) at ``sample_rate`` 16 kHz through AudioLDM's VAE and vocoder
(:class:`~condbench.adapters.audioldm.AudioLDMDecoder`).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..policies import BRANCH_COND, BRANCH_UNCOND, Policy
from ..seeding import PairedNoise
from .base import Adapter, EmbeddingParts, PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .dit import forward_in_microbatches
from .dpm_solver import DiscreteVPSchedule, DPMSolverMultistep
from .loading import materialized_device, move_materialized
from .mdsgen_model import MDSGen
from .mdt import power_cosine_scale
from ..precision import Denoiser


def linear_betas(start: float = 1e-4, end: float = 0.02, n: int = 1000) -> torch.Tensor:
    """DDPM's linear betas in float64, as ``get_named_beta_schedule('linear', 1000)`` makes them: (n,)."""
    return torch.from_numpy(np.linspace(start, end, n, dtype=np.float64))


class MDSGenAdapter(Adapter):
    """An MDSGen network with its guided DPM-Solver++ 2M sampler; ``decoder`` maps latents to waveforms."""

    condition_kind = "video"
    family = "mdsgen"
    official_precision = "bf16-c"  # inference.py: the forward under CUDA bf16 autocast, c included; bf16 noise

    def __init__(self, model: MDSGen, name: str = "mdsgen", *, num_steps: int = 50, cfg_scale: float = 5.0,
                 scale_pow: float = 0.01, decoder: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 checkpoint: Optional[dict] = None, microbatch: Optional[int] = None, precision: str = "fp32",
                 compile: bool = False):
        if microbatch is not None and microbatch < 1:
            raise ValueError(f"microbatch must be a positive number of rows, got {microbatch}")
        self.model, self.name, self.microbatch = model.eval(), name, microbatch
        # what the sampler calls (precision, compile)
        self.network = Denoiser(self.model, precision, compile, self.official_precision, name)
        self.cfg_scale, self.scale_pow = cfg_scale, scale_pow
        self.decoder, self.checkpoint = decoder, checkpoint or {}
        self.schedule = DiscreteVPSchedule(linear_betas())
        self.solver = DPMSolverMultistep(self.schedule, num_steps, order=2, t_end=1.0 / self.schedule.num_train_steps)
        self.denoiser_evaluations = 0
        self._condition_mean: Optional[torch.Tensor] = None  # (1, D), set from the task's clips

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return materialized_device(self.model)

    @property
    def embed_dim(self) -> int:
        return self.config.hidden_size

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one sample: AudioLDM's latent (8, 204, 16) for 8.16 s."""
        return (self.config.in_channels, *self.config.latent_size)

    @property
    def sample_rate(self) -> int:
        """Hz of the waveforms ``decode`` returns."""
        return getattr(self.decoder, "sample_rate", 16000)

    def to(self, device: torch.device | str) -> "MDSGenAdapter":
        move_materialized(self.model, device)
        return self

    def _features(self, cond: torch.Tensor) -> torch.Tensor:
        """Check and move CAVP features: (N, frames, feature_dim) float."""
        want = (self.config.num_frames, self.config.feature_dim)
        if not torch.is_tensor(cond) or cond.dim() != 3 or tuple(cond.shape[1:]) != want:
            shape = tuple(cond.shape) if torch.is_tensor(cond) else type(cond).__name__
            raise ValueError(f"{self.name} takes CAVP video features of shape (N, {want[0]}, {want[1]}) "
                             f"(the first {want[0]} frames at 4 fps), got {shape}")
        return cond.to(self.device, torch.float32)

    def _batch_t(self, t: torch.Tensor | float, n: int) -> torch.Tensor:
        t = torch.as_tensor(t, device=self.device, dtype=torch.float32)
        return t.expand(n) if t.dim() == 0 else t

    @torch.no_grad()
    def embed_parts(self, cond: torch.Tensor, t: torch.Tensor | float) -> EmbeddingParts:
        feats = self._features(cond)
        with self.network.embedding_context(self.device):
            t_part, y_part = self.model.embed_parts(self._batch_t(t, len(feats)), feats)
            c = t_part + y_part  # in the network's own arithmetic (bf16-c: bf16 t part + float32 video part)
        return EmbeddingParts(c=c.float(), t=t_part.float(), cond=y_part.float())

    @torch.no_grad()
    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, hook=None) -> torch.Tensor:
        feats = self._features(cond)
        return self.network(x.to(self.device), self._batch_t(t, len(x)), feats, None, hook)

    @torch.no_grad()
    def set_reference_conditions(self, cond: torch.Tensor, chunk: int = 256) -> None:
        """Remember the mean video part of c over the task's clips (N, 32, 512), for :meth:`mean_embedding`.

        The video part is not linear in the features, so the mean is over the embedded clips themselves.
        """
        with self.network.embedding_context(self.device):
            parts = [self.model.condition_embedding(self._features(cond[a:a + chunk])).float()
                     for a in range(0, len(cond), chunk)]
        self._condition_mean = torch.cat(parts).mean(0, keepdim=True)  # (1, D)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t_embedder(t) + the mean video part over the task's clips: (1, D)."""
        if self._condition_mean is None:
            raise RuntimeError(f"{self.name}: mean_embedding needs the task's clips first: call "
                               "set_reference_conditions(features) with their CAVP features (N, 32, 512)")
        return self.timestep_embedding(t) + self._condition_mean.to(self.device)

    @torch.no_grad()
    def timestep_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """t_embedder(t): the timestep part of c (1, D), in the network's own arithmetic."""
        with self.network.embedding_context(self.device):
            return self.model.t_embedder(self._batch_t(t, 1)[:1]).float()

    @property
    def noise_dtype(self) -> torch.dtype:
        """The dtype the initial noise is drawn in: bfloat16 under ``official`` (as ``inference.py`` draws it; the
        solver's float32 arithmetic promotes it at once), else float32."""
        return torch.bfloat16 if self.network.precision == "official" else torch.float32

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def guidance_scale(self, step: int) -> float:
        """The power-cosine scale at the float model timestep of evaluation ``step``."""
        return power_cosine_scale(self.cfg_scale, self.solver.model_times()[step], self.scale_pow)

    @property
    def sampler_steps(self) -> int:
        return self.solver.num_evaluations

    def sampler_timesteps(self) -> torch.Tensor:
        """The network's float time input at every evaluation, step 0 first: (S,)."""
        return self.solver.model_times()

    def evaluations_per_step(self) -> int:
        return 2 if self.guided else 1

    def _evaluate(self, x: torch.Tensor, feats: torch.Tensor, hooks: Optional[PolicyHook], step: int) -> torch.Tensor:
        """The guided noise prediction (N, C, H, W) of evaluation ``step`` for x (N, C, H, W).

        Both branches run in one batch ``[cond; null]``, the hook told which rows are which; a scale of exactly
        1 runs the conditional branch alone.
        """
        n, c, scale = len(x), self.config.in_channels, self.guidance_scale(step)
        t = self.solver.model_times()[step].to(self.device).expand(n)
        if scale == 1.0:
            branch = torch.full((n,), BRANCH_COND, device=self.device)
            keep = torch.ones(n, device=self.device)
            out = forward_in_microbatches(self.network, (x, t, feats, keep),
                                          None if hooks is None else hooks.at(step, t, branch), self.microbatch)
            self.denoiser_evaluations += n
            return out[:, :c]
        branch = torch.cat([torch.full((n,), BRANCH_COND), torch.full((n,), BRANCH_UNCOND)]).to(self.device)
        keep = torch.cat([torch.ones(n), torch.zeros(n)]).to(self.device)
        hook = None if hooks is None else hooks.at(step, t, branch)
        out = forward_in_microbatches(self.network, (torch.cat([x, x]), torch.cat([t, t]), torch.cat([feats, feats]),
                                                   keep), hook, self.microbatch)
        self.denoiser_evaluations += 2 * n
        cond, uncond = out[:n, :c], out[n:, :c]
        return uncond + scale * (cond - uncond)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        feats = self._features(cond)
        if len(noise) != len(feats):
            raise ValueError(f"{len(feats)} conditions but noise for {len(noise)} samples")
        x, first = noise.draw(self.latent_shape, self.noise_dtype).float().to(self.device), 0
        previous = torch.zeros_like(x)  # m_{k-1}, the data prediction of the previous evaluation
        if start is not None:
            x, previous, first = self._resume(start, policy)
        hooks = PolicyHook(policy, self.sampler_steps, reference=self.mean_embedding, first_step=first,
                           timestep_embedding=self.timestep_embedding)
        states = {}
        for step in range(first, self.sampler_steps):
            if step in keep_states:
                states[step] = SamplerState(step, torch.cat([x, previous], dim=1))
            model = self.solver.data_from_noise(x, self._evaluate(x, feats, hooks, step), step)
            x, previous = self.solver.update(x, step, model, previous), model
            if progress is not None:
                progress(step + 1, self.sampler_steps)
        return SampleOutput(x, hooks.trace, states)

    def _resume(self, start: SamplerState, policy: Optional[Policy]) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(x, m_prev, step) from a kept state [x; m_prev] (N, 2C, H, W); a policy acting before it is refused."""
        if policy is not None and any(policy.active(s, self.sampler_steps) for s in range(start.step)):
            raise ValueError(f"policy {policy.canonical()} acts before step {start.step}: it cannot share that prefix")
        c = self.config.in_channels
        if start.x.shape[1] != 2 * c:
            raise ValueError(f"{self.name} resumes from a multistep state [x; previous prediction] with {2 * c} "
                             f"channels, got {tuple(start.x.shape)}")
        state = start.x.to(self.device)
        return state[:, :c], state[:, c:], start.step

    def decode(self, samples: torch.Tensor) -> torch.Tensor:
        """Latents (N, 8, 204, 16) -> waveforms (N, L) at ``sample_rate``."""
        if self.decoder is None:
            raise RuntimeError(f"{self.name} was built without a decoder (pass decoder=AudioLDMDecoder(...))")
        return self.decoder(samples)

    def _arithmetic_description(self) -> dict:
        """How the noise is drawn and the network runs (the fp32 wording is part of existing cache keys)."""
        if self.network.precision == "official":
            return {"noise": "bf16 PairedNoise, as the official script draws it",
                    "dtype": "bf16 autocast over the whole forward, c included, as the official forward runs"}
        return {"noise": "float32 PairedNoise (the official script draws bf16 noise)",
                "dtype": "float32 (the official forward runs under CUDA bf16 autocast)"}

    def describe(self) -> dict:
        decoder = self.decoder.describe() if hasattr(self.decoder, "describe") else None
        return {"adapter": self.name, "family": self.family, "model_config": self.config.to_dict(),
                "sampler": {**self.solver.describe(), "cfg_scale": self.cfg_scale, "scale_pow": self.scale_pow,
                            "guidance": "power-cosine: uncond + s(t) (cond - uncond), null = video part zeroed, "
                                        f"two forwards per step; first {self.config.in_channels} output "
                                        "channels are eps",
                            "betas": "linear 1e-4..0.02, 1000 steps (float64)",
                            "time_input": "(t_continuous - 1/1000) * 1000, float",
                            "state": "[x; previous data prediction] on the channel axis",
                            **self._arithmetic_description(),
                            **({"microbatch": self.microbatch} if self.microbatch else {}), **self.network.describe()},
                "decoder": decoder, "sample_rate": self.sample_rate, "checkpoint": self.checkpoint}
