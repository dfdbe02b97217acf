"""Adapters for the flow-matching models on DiT-interface networks: SiT, REPA, MG and LightningDiT.

One adapter class, :class:`TransportAdapter`, parameterised by a :class:`TransportSpec` (the model's default
sampler: solver, steps, guidance scale, guided channels, guidance interval). The network predicts a velocity
in its first ``in_channels`` output channels (SiT-XL/2 also carries an unused learned-sigma half, which SiT's
own ``forward`` drops). Guidance is formed on the raw output as in DiT (first ``cfg_channels`` guided, the
rest from the conditional branch) and only at steps whose time lies in ``guidance_interval``; outside it the
unconditional branch is not evaluated at all (as in REPA's sampler; LightningDiT's code evaluates it and
discards it, which gives the same samples).

Official defaults: :data:`SIT_SDE` (SiT's FID-2.06 setting), :data:`SIT_ODE` (SiT's ``sample.py ODE``),
:data:`REPA_SDE` (REPA README), :data:`MG_SDE` (MG ``test.py``), :data:`LIGHTNINGDIT_ODE` (LightningDiT
``configs/reproductions/lightningdit_xl_vavae_f16d32_800ep_cfg.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import torch

from ..policies import Policy
from ..seeding import PairedNoise
from .base import PolicyHook, ProgressCallback, SampleOutput, SamplerState
from .dit import ClassConditionalAdapter
from .transport import Dopri5ODE, EulerODE, ReverseSDE, SiTSDE, TransportSolver


@dataclass(frozen=True)
class TransportSpec:
    """A released model's default sampler, in the model's own time units.

    ``solver``: "sit-sde" (SiT Euler-Maruyama + mean last step), "euler-ode" (fixed grid, optional shift),
    "dopri5" (SiT's adaptive ODE) or "reverse-sde" (REPA/MG Euler-Maruyama, t = 1 is noise).
    ``num_steps`` is the official step argument: evaluations for the SDEs, grid points for the ODEs.
    ``cfg_channels`` None guides every velocity channel. ``guidance_interval`` (low, high): guide only where
    low <= t <= high.
    """

    solver: str
    num_steps: int = 250
    cfg_scale: float = 1.0
    cfg_channels: Optional[int] = 3
    guidance_interval: Optional[tuple[float, float]] = None
    last_step_size: float = 0.04  # sit-sde
    t_last: float = 0.04  # reverse-sde
    timestep_shift: float = 0.0  # euler-ode (0: no shift)
    atol: float = 1e-6  # dopri5
    rtol: float = 1e-3  # dopri5

    def build(self) -> TransportSolver | Dopri5ODE:
        if self.solver == "sit-sde":
            return SiTSDE(self.num_steps, self.last_step_size)
        if self.solver == "euler-ode":
            return EulerODE(self.num_steps, self.timestep_shift)
        if self.solver == "reverse-sde":
            return ReverseSDE(self.num_steps, self.t_last)
        if self.solver == "dopri5":
            return Dopri5ODE(self.num_steps, self.atol, self.rtol)
        raise ValueError(f"unknown transport solver {self.solver!r}")


# The official defaults (see each repository's sampling script; ``reference/MODELS.md``).
SIT_SDE = TransportSpec("sit-sde", 250, cfg_scale=1.5, cfg_channels=3)
SIT_ODE = TransportSpec("dopri5", 250, cfg_scale=1.5, cfg_channels=3)
SIT_ODE_EULER = TransportSpec("euler-ode", 250, cfg_scale=1.5, cfg_channels=3)
REPA_SDE = TransportSpec("reverse-sde", 250, cfg_scale=1.8, cfg_channels=None, guidance_interval=(0.0, 0.7))
MG_SDE = TransportSpec("reverse-sde", 250, cfg_scale=1.0, cfg_channels=None)
LIGHTNINGDIT_ODE = TransportSpec("euler-ode", 250, cfg_scale=6.7, cfg_channels=3, guidance_interval=(0.125, 1.0),
                                 timestep_shift=0.3)


class TransportAdapter(ClassConditionalAdapter):
    """A velocity-predicting class-conditional network with its transport sampler (``spec``).

    ``num_steps`` / ``cfg_scale`` given here override the spec's; ``decoder``, ``checkpoint`` and
    ``microbatch`` are as for :class:`~condbench.adapters.dit.DiTAdapter`.
    """

    def __init__(self, model: torch.nn.Module, name: str = "sit", *, spec: TransportSpec = SIT_SDE,
                 num_steps: Optional[int] = None, cfg_scale: Optional[float] = None, **options):
        overrides = {k: v for k, v in (("num_steps", num_steps), ("cfg_scale", cfg_scale)) if v is not None}
        self.spec = replace(spec, **overrides)
        channels = model.config.in_channels if self.spec.cfg_channels is None else self.spec.cfg_channels
        super().__init__(model, name, cfg_scale=self.spec.cfg_scale, cfg_channels=channels, **options)
        self.solver = self.spec.build()

    @property
    def sampler_steps(self) -> int:
        return self.solver.num_steps

    def sampler_timesteps(self) -> torch.Tensor:
        return self.solver.times.clone()

    def guidance_scale(self, step: int) -> float:
        interval = self.spec.guidance_interval
        if interval is None:
            return self.cfg_scale
        low, high = interval
        return self.cfg_scale if low <= float(self.solver.times[step]) <= high else 1.0

    def planned_evaluations(self, first_step: int = 0) -> Optional[int]:
        if isinstance(self.solver, Dopri5ODE):
            return None  # adaptive: the number of evaluations depends on the model and the tolerances
        return super().planned_evaluations(first_step)

    def noise_draws_before(self, step: int) -> int:
        return self.solver.noise_draws_before(step) if isinstance(self.solver, TransportSolver) else 0

    def _velocity(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, hooks: Optional[PolicyHook],
                  step: int) -> torch.Tensor:
        """The (guided) velocity (N, C, H, W) at x (float32 network input) and model times t (N,)."""
        out = self._evaluate(x.float(), t.float(), y, hooks, step)
        return out[:, : self.config.in_channels]

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, noise: PairedNoise, policy: Optional[Policy] = None,
               progress: Optional[ProgressCallback] = None, *, start: Optional[SamplerState] = None,
               keep_states: Sequence[int] = ()) -> SampleOutput:
        y, x, first, hooks = self._begin(cond, noise, policy, start)
        if isinstance(self.solver, Dopri5ODE):
            return self._sample_adaptive(y, x, policy, start, keep_states, hooks)
        solver, n, states = self.solver, len(y), {}
        x = x.to(solver.state_dtype)
        for step in range(first, solver.num_steps):
            if step in keep_states:
                states[step] = SamplerState(step, x.clone())
            t = solver.times[step].to(self.device).expand(n)
            velocity = self._velocity(x, t, y, hooks, step)
            eps = noise.draw(self.latent_shape).to(self.device) if solver.draws_noise(step) else None
            x = solver.step(x, velocity, step, eps)
            if progress is not None:
                progress(step + 1, solver.num_steps)
        return SampleOutput(x.float(), hooks.trace, states)

    def _sample_adaptive(self, y: torch.Tensor, x: torch.Tensor, policy: Optional[Policy],
                         start: Optional[SamplerState], keep_states: Sequence[int], hooks: PolicyHook) -> SampleOutput:
        """dopri5 has no fixed steps for a policy schedule, a resume point or kept states to refer to."""
        if policy is not None or start is not None or keep_states:
            raise ValueError(f"{self.name}: the adaptive dopri5 sampler runs without a policy, start or kept "
                             "states; use the 'euler-ode' or 'sit-sde' sampler for those")
        rows = [self._solve_one(x[i:i + 1], y[i:i + 1]) for i in range(len(y))]
        return SampleOutput(torch.cat(rows).float(), hooks.trace, {})

    def _solve_one(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One sample (1, C, H, W) integrated as SiT integrates a batch of one, so the result is the official one
        and does not depend on which samples share a batch (dopri5's step control sees the whole state).

        With guidance SiT's state is [x; x]: both halves move with the guided channels, and the second half's
        other channels follow the unconditional branch; that half is discarded but enters the error norm.
        """
        c, g = self.config.in_channels, self.cfg_channels
        if not self.guided:
            return self.solver.solve(lambda t, state: self._velocity(state, t.expand(1), y, None, 0), x)
        y_pair = torch.cat([y, torch.full_like(y, self.num_classes)])

        def velocity(t: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
            half = state[:1]
            out = self._forward(torch.cat([half, half]), t.expand(2), y_pair, None)[:, :c]  # (2, C, H, W)
            self.denoiser_evaluations += 2
            guided = self._guide(out, 1)[:, :g]  # (1, g, H, W)
            return torch.cat([guided.expand(2, -1, -1, -1), out[:, g:]], dim=1)

        return self.solver.solve(velocity, torch.cat([x, x]))[:1]

    def sampler_description(self) -> dict:
        return {**self.solver.describe(), "cfg_scale": self.cfg_scale, "cfg_channels": self.cfg_channels,
                "guidance_interval": list(self.spec.guidance_interval) if self.spec.guidance_interval else None,
                "velocity_channels": self.config.in_channels, "solver": self.spec.solver}
