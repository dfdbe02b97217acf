"""Update rules of the flow-matching ("transport") samplers: SiT, REPA, MG and LightningDiT.

All four models learn the velocity of the linear interpolant between noise and data, but state time in
opposite directions: SiT and LightningDiT write x_t = t * data + (1 - t) * noise (t = 0 is noise), REPA and
MG write x_t = (1 - t) * data + t * noise (t = 1 is noise). A solver here owns its time grid in the model's
own units, says at which steps it consumes a noise tensor, and maps (x, velocity) to the next state; the
adapter (``sit.py``) evaluates the network, guidance and the policy hook around it.

- :class:`SiTSDE`: SiT's Euler-Maruyama (``transport/integrators.py`` ``sde``) with the "sigma" diffusion
  coefficient w(t) = norm * (1 - t) and a final noise-free "Mean" step of ``last_step_size``.
- :class:`EulerODE`: fixed-grid Euler on the probability-flow ODE, optionally on LightningDiT's shifted grid
  t' = s t / (1 + (s - 1) t) (SiT's ODE with ``sampling_method=euler``; LightningDiT's default sampler).
- :class:`ReverseSDE`: REPA's ``euler_maruyama_sampler`` (also MG's): float64 state, steps on
  linspace(1, t_last, S) with diffusion 2t, then one noise-free step from t_last to 0.
- :class:`Dopri5ODE`: SiT's default ODE solver (adaptive dopri5 of torchdiffeq); no fixed steps.
"""
from __future__ import annotations

import abc
from typing import Callable

import torch


def _expand(value: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A scalar tensor as one broadcastable against x (N, C, H, W), on x's device and in x's dtype."""
    return value.to(device=x.device, dtype=x.dtype).reshape(1, *([1] * (x.dim() - 1)))


class TransportSolver(abc.ABC):
    """A fixed-step sampler: ``num_steps`` network evaluations at ``times`` (model units, step 0 first)."""

    state_dtype: torch.dtype = torch.float32
    times: torch.Tensor  # (S,) the model timestep of every evaluation

    @property
    def num_steps(self) -> int:
        return len(self.times)

    def draws_noise(self, step: int) -> bool:
        """Whether ``step`` consumes one noise tensor (SDE steps do, the final mean step and ODEs do not)."""
        return False

    def noise_draws_before(self, step: int) -> int:
        """Noise tensors consumed by steps 0..step-1."""
        return sum(self.draws_noise(s) for s in range(step))

    @abc.abstractmethod
    def step(self, x: torch.Tensor, velocity: torch.Tensor, step: int, noise: torch.Tensor | None) -> torch.Tensor:
        """The state after ``step``: x (N, C, H, W) in ``state_dtype``, velocity (N, C, H, W) at ``times[step]``."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """The solver's settings, for the adapter's ``describe``."""


class SiTSDE(TransportSolver):
    """SiT's Euler-Maruyama sampler for the linear path, t = 0 (noise) -> 1 - last_step_size, then a mean step.

    With velocity v, score s = (t v - x) / (1 - t) and diffusion w = norm * (1 - t), the SDE drift is
    v + w s and one step is x + drift dt + sqrt(2 w dt) * noise. ``num_steps`` counts every network
    evaluation: num_steps - 1 stochastic steps on linspace(0, 1 - last_step_size, num_steps), then the last.
    """

    def __init__(self, num_steps: int = 250, last_step_size: float = 0.04, diffusion_norm: float = 1.0):
        if num_steps < 2:
            raise ValueError(f"SiT's SDE sampler needs at least 2 steps, got {num_steps}")
        self.last_step_size = last_step_size
        self.diffusion_norm = diffusion_norm
        self.times = torch.linspace(0.0, 1.0 - last_step_size, num_steps)  # (S,) float32, as SiT builds it
        self.dt = self.times[1] - self.times[0]

    def draws_noise(self, step: int) -> bool:
        return step < self.num_steps - 1

    def drift(self, x: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SDE drift and the diffusion coefficient w(t) at time t (0-dim)."""
        t = _expand(t, x)
        score = (t * velocity - x) / ((1 - t) ** 2 + t * (1 - t))  # variance of the linear path given x_t
        diffusion = self.diffusion_norm * (1 - t)
        return velocity + diffusion * score, diffusion

    def step(self, x: torch.Tensor, velocity: torch.Tensor, step: int, noise: torch.Tensor | None) -> torch.Tensor:
        drift, diffusion = self.drift(x, velocity, self.times[step])
        if step == self.num_steps - 1:
            return x + drift * self.last_step_size
        return x + drift * self.dt + torch.sqrt(2 * diffusion) * (noise * torch.sqrt(self.dt))

    def describe(self) -> dict:
        return {"name": "sit-sde-euler-maruyama", "num_steps": self.num_steps, "diffusion_form": "sigma",
                "diffusion_norm": self.diffusion_norm, "last_step": "Mean", "last_step_size": self.last_step_size}


def shift_times(t: torch.Tensor, shift: float) -> torch.Tensor:
    """LightningDiT's timestep shift t' = s t / (1 + (s - 1) t) (s < 1 spends more steps near noise, t = 0)."""
    return shift * t / (1 + (shift - 1) * t)


class EulerODE(TransportSolver):
    """Fixed-grid Euler on dx/dt = v from t = 0 (noise) to 1, on linspace(0, 1, grid_points), maybe shifted.

    ``grid_points`` is the official ``num_steps`` (points of the grid, so grid_points - 1 evaluations).
    """

    def __init__(self, grid_points: int = 250, shift: float = 0.0):
        if grid_points < 2:
            raise ValueError(f"the Euler grid needs at least 2 points, got {grid_points}")
        self.grid_points = grid_points
        self.shift = shift
        grid = torch.linspace(0.0, 1.0, grid_points)  # (G,) float32
        self.grid = shift_times(grid, shift) if shift > 0 else grid
        self.times = self.grid[:-1]

    def step(self, x: torch.Tensor, velocity: torch.Tensor, step: int, noise: torch.Tensor | None) -> torch.Tensor:
        return x + (self.grid[step + 1] - self.grid[step]) * velocity

    def describe(self) -> dict:
        return {"name": "euler-ode", "grid_points": self.grid_points, "num_steps": self.num_steps,
                "timestep_shift": self.shift}


class ReverseSDE(TransportSolver):
    """REPA's (and MG's) Euler-Maruyama sampler, t = 1 (noise) -> t_last, then a mean step to 0; float64 state.

    With velocity v, score s = ((t - 1) v - x) / t and diffusion 2t, the drift is v - t s and one step is
    x + drift dt + sqrt(2t |dt|) * noise on linspace(1, t_last, num_steps); the last evaluation, at t_last,
    takes the noise-free step to 0.
    """

    state_dtype = torch.float64

    def __init__(self, num_steps: int = 250, t_last: float = 0.04):
        if num_steps < 2:
            raise ValueError(f"the Euler-Maruyama sampler needs at least 2 steps, got {num_steps}")
        self.t_last = t_last
        grid = torch.linspace(1.0, t_last, num_steps, dtype=torch.float64)
        self.grid = torch.cat([grid, torch.zeros(1, dtype=torch.float64)])  # (S + 1,)
        self.times = grid

    def draws_noise(self, step: int) -> bool:
        return step < self.num_steps - 1

    @staticmethod
    def drift(x: torch.Tensor, velocity: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v - (diffusion / 2) * score for the path x_t = (1 - t) data + t noise."""
        t = _expand(t, x)
        score = ((t - 1) * velocity - x) / (t ** 2 + (1 - t) * t)
        return velocity - t * score

    def step(self, x: torch.Tensor, velocity: torch.Tensor, step: int, noise: torch.Tensor | None) -> torch.Tensor:
        t, dt = self.grid[step], self.grid[step + 1] - self.grid[step]
        moved = x + self.drift(x, velocity.to(x.dtype), t) * dt
        if step == self.num_steps - 1:
            return moved
        return moved + torch.sqrt(2 * t) * (noise.to(x.dtype) * torch.sqrt(dt.abs()))

    def describe(self) -> dict:
        return {"name": "euler-maruyama", "num_steps": self.num_steps, "t_last": self.t_last, "diffusion": "2t"}


class Dopri5ODE:
    """SiT's default ODE solver: torchdiffeq's adaptive dopri5 on dx/dt = v from t = 0 (noise) to 1.

    ``grid_points`` output times on linspace(0, 1) (the official ``num_steps``) do not move the adaptive steps;
    they are the nominal ``times``. The number of network evaluations depends on atol/rtol and the model.
    """

    def __init__(self, grid_points: int = 250, atol: float = 1e-6, rtol: float = 1e-3):
        self.grid_points, self.atol, self.rtol = grid_points, atol, rtol
        self.times = torch.linspace(0.0, 1.0, grid_points)  # (G,) float32

    @property
    def num_steps(self) -> int:
        return self.grid_points

    def solve(self, velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The state at t = 1 from x (N, C, H, W) at t = 0; ``velocity(t, x)`` takes t as a 0-dim tensor."""
        from torchdiffeq import odeint

        times = self.times.to(x.device)
        return odeint(velocity, x, times, method="dopri5", atol=[self.atol], rtol=[self.rtol])[-1]

    def describe(self) -> dict:
        return {"name": "dopri5-ode", "grid_points": self.grid_points, "atol": self.atol, "rtol": self.rtol}
