"""U-ViT-H/2 (baofff/U-ViT) with its own sampler: DPM-Solver-fast in data prediction (DPM-Solver++), as
``eval_ldm_discrete.py`` runs it for ImageNet 256.

The official call is ``DPM_Solver(model_fn, NoiseScheduleVP('discrete', betas), predict_x0=True)
.sample(z, steps=50, eps=1/1000, T=1)`` with the defaults of ``dpm_solver_pp.py``: method 'fast', order 3,
skip_type 'time_uniform', solver_type 'dpm_solver', no final denoise. So 50 network evaluations are spent as
singlestep solver steps of orders [3]*16 + [2] over 51 time points linspace(1, 1e-3); the betas are Stable
Diffusion's (linear in sqrt from 0.00085 to 0.012, 1000 steps), the network sees t_continuous * 1000, and
guidance is ``cond + 0.4 * (cond - uncond)`` (config ``scale=0.4``), i.e. classifier-free scale 1.4 on every
latent channel, the null label being 1000.

A condbench "step" is one network evaluation (50 of them). A singlestep solver step needs the evaluations
inside it, so the state kept for step k is the latent at the start of the solver step holding k; resuming
at k recomputes that solver step's evaluations before k without the policy (it is inactive there by the
contract of ``start``), which reproduces the uninterrupted trajectory exactly.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..policies import Policy
from ..seeding import PairedNoise
from .base import PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .dit import ClassConditionalAdapter
from .dpm_solver import DiscreteVPSchedule, DPMSolverFast
from .uvit_model import UViT


def stable_diffusion_betas(start: float = 0.00085, end: float = 0.012, n: int = 1000) -> torch.Tensor:
    """Betas linear in their square root (float64, then float32 as the official code feeds them): (n,)."""
    return (torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2).float()


class UViTAdapter(ClassConditionalAdapter):
    """U-ViT with DPM-Solver-fast (data prediction) and guidance ``cond + (cfg_scale - 1) * (cond - uncond)``.

    c = time token + label token (see ``uvit_model``); ``decoder`` maps latents to images (the lead passes the
    SD VAE, latents divided by 0.18215).
    """

    family = "uvit"

    def __init__(self, model: UViT, name: str = "uvit", *, num_steps: int = 50, cfg_scale: float = 1.4,
                 **options):
        super().__init__(model, name, cfg_scale=cfg_scale, cfg_channels=None, **options)
        self.schedule = DiscreteVPSchedule(stable_diffusion_betas())
        self.solver = DPMSolverFast(self.schedule, num_steps, t_end=1.0 / self.schedule.num_train_steps)

    @property
    def num_classes(self) -> int:
        """Real classes; the label table's last row (this index) is the null class."""
        return self.config.num_classes - 1

    @property
    def sampler_steps(self) -> int:
        return self.solver.num_evaluations

    def sampler_timesteps(self) -> torch.Tensor:
        """The network's time input at every evaluation: t_continuous * 1000, step 0 first: (S,)."""
        return self.solver.times() * self.schedule.num_train_steps

    def noise_draws_before(self, step: int) -> int:
        return 0  # an ODE solver: the initial noise is all it draws

    def planned_evaluations(self, first_step: int = 0) -> Optional[int]:
        """Resuming at ``first_step`` recomputes the evaluations of its solver step before it (see ``sample``)."""
        start = max(step.first for step in self.solver.steps if step.first <= first_step)
        return super().planned_evaluations(start)

    @torch.no_grad()
    def mean_embedding(self, t: torch.Tensor) -> torch.Tensor:
        """Time token + mean label token over the real classes (c is linear in the label row): (1, D)."""
        table = self.model.label_emb.weight[: self.num_classes]  # (K, D)
        return self.model.time_token(self._batch_t(t, 1)[:1]) + table.mean(0, keepdim=True)

    def _guide(self, out: torch.Tensor, n: int, scale: Optional[float] = None) -> torch.Tensor:
        """[cond; uncond] (2N, C, H, W) -> cond + (scale - 1) * (cond - uncond) on every channel (U-ViT's form)."""
        scale = self.cfg_scale if scale is None else scale
        cond, uncond = out[:n], out[n:]
        return cond + (scale - 1.0) * (cond - uncond)

    def _x0(self, x: torch.Tensor, tau: torch.Tensor, y: torch.Tensor, hooks: Optional[PolicyHook], step: int,
            progress: Optional[ProgressCallback]) -> torch.Tensor:
        """The guided x0 prediction at continuous time tau (1,) for x (N, C, H, W), as evaluation ``step``."""
        eps = self._evaluate(x, (tau * self.schedule.num_train_steps).to(self.device).expand(len(x)), y, hooks, step)
        if progress is not None:
            progress(step + 1, self.sampler_steps)
        alpha, sigma = (v.to(self.device).reshape(1, 1, 1, 1)
                        for v in (self.schedule.alpha(tau), self.schedule.sigma(tau)))
        return (x - sigma * eps) / alpha  # (N, C, H, W)

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        y, x, first, hooks = self._begin(cond, noise, policy, start)
        states = {}
        for solver_step in self.solver.steps:
            if solver_step.first + solver_step.order <= first:
                continue  # wholly inside the shared prefix that ``start`` carries
            for k in solver_step.evaluations():
                if k in keep_states:
                    states[k] = SamplerState(k, x.clone())  # the state the solver step holding k starts from

            def data(x_in: torch.Tensor, tau: torch.Tensor, k: int) -> torch.Tensor:
                resumed = k < first  # a prefix evaluation recomputed after a resume: no policy, no trace
                return self._x0(x_in, tau, y, None if resumed else hooks, k, None if resumed else progress)

            x = self.solver.step(x, solver_step, data)
        return SampleOutput(x, hooks.trace, states)

    def sampler_description(self) -> dict:
        return {**self.solver.describe(), "cfg_scale": self.cfg_scale,
                "guidance": "cond + (cfg_scale - 1) * (cond - uncond), all channels, null label 1000",
                "betas": "stable-diffusion sqrt-linear 0.00085..0.012, 1000 steps", "time_input": "t_continuous * 1000"}
