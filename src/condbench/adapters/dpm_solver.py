"""DPM-Solver (Lu et al.) in continuous time on a discrete VP schedule, as LuChengTHU's reference files run it.

:class:`DiscreteVPSchedule` reads N discrete betas as a function of t in (0, 1] (log alpha linear between the
knots t_i = (i + 1) / N); the network sees a float time (U-ViT: t * N; MDSGen's ``model_wrapper``:
(t - 1/N) * 1000). Two solvers in data prediction
(DPM-Solver++): :class:`DPMSolverFast` (singlestep, orders 3/2/1; U-ViT's ``dpm_solver_pp.py``) and
:class:`DPMSolverMultistep` (multistep order 2, "DPM-Solver++ 2M"; MDSGen's ``dpm_solver_pytorch.py``
``sample(method='multistep', order=2)``). Both use solver_type 'dpmsolver', no thresholding, no final denoise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear f(x) through knots (xp increasing, fp), extended linearly past both ends: (M,) -> (M,)."""
    j = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)  # the segment (j-1, j) holding x
    x0, x1, f0, f1 = xp[j - 1], xp[j], fp[j - 1], fp[j]
    return f0 + (x - x0) * (f1 - f0) / (x1 - x0)


class DiscreteVPSchedule:
    """A discrete VP noise schedule read as a function of continuous time t in (0, 1]: knot i at (i + 1) / N."""

    def __init__(self, betas: torch.Tensor):
        self.num_train_steps = len(betas)
        # computed in the betas' precision (MDSGen passes float64), then kept in float32 as the official code does
        self.log_alpha_knots = (0.5 * torch.log(1 - betas).cumsum(0)).float()  # (N,) log of the signal scale
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


class DPMSolverMultistep:
    """DPM-Solver++ multistep of order 1 or 2 over ``steps + 1`` time-uniform points from ``t_start`` to ``t_end``.

    Evaluation k (k = 0..steps-1) is the data prediction m_k at times[k]; update k takes x from times[k] to
    times[k + 1] with m_k and, from k = 1 on (order 2), m_{k-1}. The last point is never evaluated. With
    ``lower_order_final`` and fewer than 10 steps the final updates drop to order 1, as the official file does.
    """

    def __init__(self, schedule: DiscreteVPSchedule, steps: int = 50, order: int = 2, t_start: float = 1.0,
                 t_end: float = 1e-3, lower_order_final: bool = True):
        if order not in (1, 2):
            raise ValueError(f"multistep DPM-Solver++ is implemented for order 1 or 2, got {order}")
        if steps < order:
            raise ValueError(f"{steps} steps are too few for a multistep solver of order {order}")
        self.schedule, self.num_evaluations, self.order = schedule, steps, order
        self.t_start, self.t_end, self.lower_order_final = t_start, t_end, lower_order_final
        self.times = torch.linspace(t_start, t_end, steps + 1)  # (steps + 1,) float32, as the official linspace
        self.orders = [min(order, k + 1, steps - k if lower_order_final and steps < 10 else order)
                       for k in range(steps)]

    def model_times(self) -> torch.Tensor:
        """The network's time input at every evaluation, (t - 1/N) * N: (steps,)."""
        n = self.schedule.num_train_steps
        return (self.times[:-1] - 1.0 / n) * n

    def describe(self) -> dict:
        return {"name": "dpm-solver++ multistep", "prediction": "data (DPM-Solver++)", "order": self.order,
                "evaluations": self.num_evaluations, "orders": self.orders, "skip_type": "time_uniform",
                "solver_type": "dpmsolver", "t_start": self.t_start, "t_end": self.t_end,
                "lower_order_final": self.lower_order_final, "final_denoise": False}

    def data_from_noise(self, x: torch.Tensor, eps: torch.Tensor, k: int) -> torch.Tensor:
        """The data prediction at evaluation k from the noise prediction: (x - sigma eps) / alpha, (N, ...)."""
        tau = self.times[k].reshape(1)
        alpha, sigma = (_broadcast(v, x) for v in (self.schedule.alpha(tau), self.schedule.sigma(tau)))
        return (x - sigma * eps) / alpha

    def update(self, x: torch.Tensor, k: int, model_k: torch.Tensor, model_prev: torch.Tensor) -> torch.Tensor:
        """x (N, ...) at times[k] -> x at times[k + 1], from m_k and (order 2) m_{k-1}."""
        sch = self.schedule
        s, t = self.times[k].reshape(1), self.times[k + 1].reshape(1)
        lam_s, lam_t = sch.lam(s), sch.lam(t)
        h = lam_t - lam_s
        ratio, alpha_phi = _broadcast(sch.sigma(t) / sch.sigma(s), x), _broadcast(sch.alpha(t) * torch.expm1(-h), x)
        if self.orders[k] == 1:
            return ratio * x - alpha_phi * model_k
        r0 = (lam_s - sch.lam(self.times[k - 1].reshape(1))) / h  # the previous step's share of h in log-SNR
        d1 = _broadcast(1.0 / r0, x) * (model_k - model_prev)
        return ratio * x - alpha_phi * model_k - 0.5 * alpha_phi * d1


def _broadcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A coefficient (1,) -> (1, 1, ..., 1) on x's device, to scale a batch x (N, ...)."""
    return v.to(x.device).reshape(-1, *([1] * (x.dim() - 1)))
