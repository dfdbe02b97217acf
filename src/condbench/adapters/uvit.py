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

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..policies import Policy
from ..seeding import PairedNoise
from .base import PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .dit import ClassConditionalAdapter
from .uvit_model import UViT


def stable_diffusion_betas(start: float = 0.00085, end: float = 0.012, n: int = 1000) -> torch.Tensor:
    """Betas linear in their square root (float64, then float32 as the official code feeds them): (n,)."""
    return (torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2).float()


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) through knots (xp increasing, fp), extended linearly past both ends: (M,) -> (M,)."""
    j = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)  # the segment (j-1, j) holding x
    x0, x1, f0, f1 = xp[j - 1], xp[j], fp[j - 1], fp[j]
    return f0 + (x - x0) * (f1 - f0) / (x1 - x0)


class DiscreteVPSchedule:
    """A discrete VP noise schedule read as a function of continuous time t in (0, 1]: knot i at (i + 1) / N."""

    def __init__(self, betas: torch.Tensor):
        self.num_train_steps = len(betas)
        self.log_alpha_knots = 0.5 * torch.log(1 - betas).cumsum(0)  # (N,) log of the signal scale
        self.t_knots = torch.linspace(1.0 / len(betas), 1.0, len(betas))  # (N,)

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        return _interp(t.reshape(-1), self.t_knots, self.log_alpha_knots)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(1.0 - torch.exp(2.0 * self.log_alpha(t)))

    def lam(self, t: torch.Tensor) -> torch.Tensor:
        """Half log-SNR, log(alpha) - log(sigma)."""
        log_alpha = self.log_alpha(t)
        return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))

    def inverse_lam(self, lam: torch.Tensor) -> torch.Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros(1), -2.0 * lam.reshape(-1))
        return _interp(log_alpha, self.log_alpha_knots.flip(0), self.t_knots.flip(0))


@dataclass(frozen=True)
class SolverStep:
    """One singlestep solver step from time s to t of order 1-3; ``times`` are its evaluation times (1,) each."""

    first: int  # the index of its first evaluation among all the solver's evaluations
    order: int
    s: torch.Tensor
    t: torch.Tensor
    r: tuple[torch.Tensor, ...]  # r1 (order >= 2), r2 (order 3): the inner points' share of h in log-SNR
    times: tuple[torch.Tensor, ...]

    def evaluations(self) -> range:
        return range(self.first, self.first + self.order)


class DPMSolverFast:
    """DPM-Solver-fast with data prediction: ``steps`` evaluations over time-uniform points from 1 to ``t_end``."""

    def __init__(self, schedule: DiscreteVPSchedule, steps: int = 50, t_end: float = 1e-3, t_start: float = 1.0):
        if steps < 2:
            raise ValueError(f"DPM-Solver-fast needs at least 2 evaluations, got {steps}")
        self.schedule, self.num_evaluations, self.t_end, self.t_start = schedule, steps, t_end, t_start
        k, rest = divmod(steps, 3)  # as many third-order steps as fit, then one of order 2 and/or 1
        orders = [3] * (k - 1) + [2, 1] if rest == 0 else [3] * k + [rest]
        grid = torch.linspace(t_start, t_end, steps + 1)  # (steps + 1,)
        lam = schedule.lam
        self.steps, i = [], 0
        for order in orders:
            s, t = grid[i].reshape(1), grid[i + order].reshape(1)
            h = lam(t) - lam(s)
            r = tuple((lam(grid[i + j].reshape(1)) - lam(s)) / h for j in range(1, order))
            inner = tuple(schedule.inverse_lam(lam(s) + rj * h) for rj in r)
            self.steps.append(SolverStep(i, order, s, t, r, (s,) + inner))
            i += order

    def times(self) -> torch.Tensor:
        """All evaluation times in continuous time, in order: (steps,)."""
        return torch.cat([tau for step in self.steps for tau in step.times])

    def describe(self) -> dict:
        return {"name": "dpm-solver-fast", "prediction": "data (DPM-Solver++)", "evaluations": self.num_evaluations,
                "orders": [s.order for s in self.steps], "skip_type": "time_uniform", "solver_type": "dpm_solver",
                "t_start": self.t_start, "t_end": self.t_end, "final_denoise": False}

    def step(self, x: torch.Tensor, step: SolverStep,
             data: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        """x (N, C, H, W) at step.s -> x at step.t; ``data(x, tau, k)`` is the x0 prediction of evaluation k."""
        sch = self.schedule

        def b(v: torch.Tensor) -> torch.Tensor:  # a coefficient (1,) -> (1, 1, 1, 1) on x's device
            return v.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))

        s, t = step.s, step.t
        h = sch.lam(t) - sch.lam(s)
        sigma_s, sigma_t, alpha_t = sch.sigma(s), sch.sigma(t), sch.alpha(t)
        m_s = data(x, s, step.first)
        if step.order == 1:
            return b(sigma_t / sigma_s) * x + b(alpha_t * ((torch.exp(-h) - 1.0) / -1.0)) * m_s  # 1 - e^-h
        phi_1 = torch.expm1(-h)
        r1, s1 = step.r[0], step.times[1]
        x_s1 = b(sch.sigma(s1) / sigma_s) * x - b(sch.alpha(s1) * torch.expm1(-r1 * h)) * m_s
        m_s1 = data(x_s1, s1, step.first + 1)
        if step.order == 2:
            return (b(sigma_t / sigma_s) * x - b(alpha_t * phi_1) * m_s
                    - b((0.5 / r1) * (alpha_t * phi_1)) * (m_s1 - m_s))
        r2, s2 = step.r[1], step.times[2]
        phi_22 = torch.expm1(-r2 * h) / (r2 * h) + 1.0
        x_s2 = (b(sch.sigma(s2) / sigma_s) * x - b(sch.alpha(s2) * torch.expm1(-r2 * h)) * m_s
                + b(r2 / r1 * (sch.alpha(s2) * phi_22)) * (m_s1 - m_s))
        m_s2 = data(x_s2, s2, step.first + 2)
        phi_2 = phi_1 / h + 1.0
        return b(sigma_t / sigma_s) * x - b(alpha_t * phi_1) * m_s + b((1.0 / r2) * (alpha_t * phi_2)) * (m_s2 - m_s)


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
