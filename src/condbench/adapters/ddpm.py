"""DiT's Gaussian diffusion: 1000-step linear betas, timestep respacing, learned-range sigma.

Follows the process of facebookresearch/DiT ``diffusion/`` (itself from ADM/improved-DDPM): coefficients
are computed in float64 and cast to float32 when used, the reverse step is
``x_{t-1} = mean + [t > 0] * exp(0.5 * log_var) * z``, and the training loss is the hybrid
``MSE(eps) + VB`` with the mean frozen inside the VB term. :meth:`GaussianDiffusion.ddim_step` is the same
code base's ``ddim_sample`` (DDIM, eta 0 by default; X-MDPT samples with it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch


def linear_betas(num_timesteps: int = 1000) -> np.ndarray:
    """DiT's linear schedule, scaled so that 1000 steps give betas from 1e-4 to 0.02."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def respaced_timesteps(num_timesteps: int, num_steps: int) -> list[int]:
    """Evenly strided subset of ``range(num_timesteps)`` with ``num_steps`` entries (DiT's ``space_timesteps``)."""
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    if num_steps == 1:
        return [0]
    stride = (num_timesteps - 1) / (num_steps - 1)
    taken, position = [], 0.0
    for _ in range(num_steps):  # accumulate the stride exactly as DiT does, so rounding agrees
        taken.append(round(position))
        position += stride
    return sorted(set(taken))


@dataclass
class GaussianDiffusion:
    """A discrete diffusion process; ``timestep_map[i]`` is the model's t for process step i."""

    betas: np.ndarray
    timestep_map: np.ndarray

    @classmethod
    def dit(cls, num_steps: int = 1000, num_timesteps: int = 1000) -> "GaussianDiffusion":
        """DiT's process respaced to ``num_steps`` (DiT samples with 250)."""
        base = np.cumprod(1.0 - linear_betas(num_timesteps))
        kept = respaced_timesteps(num_timesteps, num_steps)
        betas, last = [], 1.0
        for t in kept:
            betas.append(1 - base[t] / last)
            last = base[t]
        return cls(np.array(betas, dtype=np.float64), np.array(kept, dtype=np.int64))

    def __post_init__(self) -> None:
        b = self.betas
        self.num_steps = len(b)
        alphas = 1.0 - b
        self.alphas_cumprod = np.cumprod(alphas)
        ac_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.alphas_cumprod_prev = ac_prev
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1)
        posterior_variance = b * (1.0 - ac_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        self.posterior_mean_coef1 = b * np.sqrt(ac_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - ac_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        self.log_betas = np.log(b)

    @staticmethod
    def _at(arr: np.ndarray, steps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """arr[steps] as float32, broadcastable to ``like`` (N, ...)."""
        out = torch.from_numpy(arr).to(steps.device)[steps].float()
        return out.view(-1, *([1] * (like.dim() - 1)))

    def model_timesteps(self, steps: torch.Tensor) -> torch.Tensor:
        """Process step indices -> the timesteps the network was trained with (0..999)."""
        return torch.from_numpy(self.timestep_map).to(steps.device)[steps]

    def q_sample(self, x0: torch.Tensor, steps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self._at(self.sqrt_alphas_cumprod, steps, x0) * x0 + self._at(
            self.sqrt_one_minus_alphas_cumprod, steps, x0) * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, steps, xt) * x0 + self._at(self.posterior_mean_coef2, steps, xt) * xt
        return mean, self._at(self.posterior_log_variance_clipped, steps, xt)

    def p_mean_variance(self, model_out: torch.Tensor, xt: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of p(x_{t-1} | x_t) from an output of [eps, v] channels (learned range)."""
        eps, v = model_out.chunk(2, dim=1)
        min_log = self._at(self.posterior_log_variance_clipped, steps, xt)
        max_log = self._at(self.log_betas, steps, xt)
        frac = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log
        x0 = self._at(self.sqrt_recip_alphas_cumprod, steps, xt) * xt - self._at(
            self.sqrt_recipm1_alphas_cumprod, steps, xt) * eps
        mean, _ = self.q_posterior(x0, xt, steps)
        return mean, log_var

    def p_step(self, model_out: torch.Tensor, xt: torch.Tensor, steps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One reverse step x_t -> x_{t-1}; no noise is added at step 0."""
        mean, log_var = self.p_mean_variance(model_out, xt, steps)
        nonzero = (steps != 0).float().view(-1, *([1] * (xt.dim() - 1)))
        return mean + nonzero * torch.exp(0.5 * log_var) * noise

    def ddim_step(self, model_out: torch.Tensor, xt: torch.Tensor, steps: torch.Tensor, eta: float = 0.0,
                  noise: Optional[torch.Tensor] = None) -> torch.Tensor:
        """One DDIM step x_t -> x_{t-1} from an output whose first C channels are eps (no clipping of x0).

        As the official ``ddim_sample``: x0 from eps, eps re-derived from x0, then
        ``x0 * sqrt(abar_prev) + sqrt(1 - abar_prev - sigma^2) * eps + [t > 0] * sigma * noise`` with
        ``sigma = eta * sqrt((1 - abar_prev) / (1 - abar)) * sqrt(1 - abar / abar_prev)``; eta 0 needs no noise.
        """
        eps = model_out[:, : xt.shape[1]]  # (N, C, H, W); learned-sigma channels are not used
        recip = self._at(self.sqrt_recip_alphas_cumprod, steps, xt)
        recipm1 = self._at(self.sqrt_recipm1_alphas_cumprod, steps, xt)
        x0 = recip * xt - recipm1 * eps
        eps = (recip * xt - x0) / recipm1
        abar, abar_prev = self._at(self.alphas_cumprod, steps, xt), self._at(self.alphas_cumprod_prev, steps, xt)
        sigma = eta * torch.sqrt((1 - abar_prev) / (1 - abar)) * torch.sqrt(1 - abar / abar_prev)
        x = x0 * torch.sqrt(abar_prev) + torch.sqrt(1 - abar_prev - sigma ** 2) * eps
        if eta == 0:
            return x
        if noise is None:
            raise ValueError(f"a DDIM step with eta {eta} needs noise")
        nonzero = (steps != 0).float().view(-1, *([1] * (xt.dim() - 1)))
        return x + nonzero * sigma * noise

    def hybrid_loss(self, model_out: torch.Tensor, x0: torch.Tensor, xt: torch.Tensor, steps: torch.Tensor,
                    noise: torch.Tensor) -> torch.Tensor:
        """Per-sample DiT training loss: MSE on eps plus the VB term (bits/dim) that trains sigma."""
        eps, v = model_out.chunk(2, dim=1)
        mse = ((noise - eps) ** 2).flatten(1).mean(1)
        frozen = torch.cat([eps.detach(), v], dim=1)  # the VB term must not move the mean
        mean, log_var = self.p_mean_variance(frozen, xt, steps)
        true_mean, true_log_var = self.q_posterior(x0, xt, steps)
        kl = normal_kl(true_mean, true_log_var, mean, log_var).flatten(1).mean(1) / math.log(2.0)
        nll = -discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_var).flatten(1).mean(1) / math.log(2.0)
        return mse + torch.where(steps == 0, nll, kl)


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)), elementwise."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor, log_scales: torch.Tensor) -> torch.Tensor:
    """Log-likelihood of data in [-1, 1] quantised to 256 bins under a Gaussian, elementwise."""
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = _approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = _approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))
