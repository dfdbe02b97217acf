"""Embedding statistics of the conditional vector, with the study's formulas.

For a matrix C (N conditions, D dimensions):

- pairwise cosine: cos(c_i, c_j) over all i != j (mean, min, max) and the full (N, N) matrix;
- participation ratio PR(c) = (sum_i |c_i|)^2 / sum_i c_i^2 (1 for a one-hot vector, D for a constant one),
  nPR = PR / D. Both are computed per condition and then averaged over conditions (the study's Table 1);
  the PR of the mean vector is reported beside them;
- sparsity ratio s(tau) = #{i : |c_i| < tau} / D, per condition, averaged over conditions;
- per-dimension mean and (population, ddof 0) variance across conditions;
- head dimensions: the top-k by mean |c_i| and by variance, k = round(mean PR) unless given.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import torch

from .finite import require_finite
from .sparsity import DEFAULT_TAUS



def participation_ratio(c: torch.Tensor) -> torch.Tensor:
    """PR of each row: (N, D) -> (N,). A zero row has PR 0."""
    c = c.double()
    l1 = c.abs().sum(dim=-1)
    l2sq = (c * c).sum(dim=-1)
    return torch.where(l2sq > 0, l1 * l1 / l2sq.clamp(min=torch.finfo(torch.float64).tiny), torch.zeros_like(l1))


def cosine_matrix(c: torch.Tensor) -> torch.Tensor:
    """Pairwise cosine similarity of rows: (N, D) -> (N, N)."""
    unit = torch.nn.functional.normalize(c.double(), dim=-1)
    return unit @ unit.T


def sparsity_ratio(c: torch.Tensor, taus: Sequence[float]) -> dict[str, float]:
    """s(tau): fraction of dimensions with |c_i| < tau, per row, averaged over rows.

    The comparison is made in c's own dtype, as the ``tail:TAU`` policy makes it, so that s(tau) * d is
    exactly the number of dimensions that policy removes (float32 0.01 is below the float64 0.01).
    """
    magnitude = c.abs()
    return {f"{tau:g}": float((magnitude < tau).double().mean()) for tau in taus}


def _finite(x: float) -> Optional[float]:
    return float(x) if math.isfinite(x) else None


@dataclass
class EmbeddingStatistics:
    """Scalars for the JSON summary and arrays for plots, of one (N, D) matrix."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def embedding_statistics(c: torch.Tensor, taus: Sequence[float] = DEFAULT_TAUS,
                         head_k: Optional[int] = None, keep_matrix: bool = True) -> EmbeddingStatistics:
    """All statistics of the rows of c (N, D); ``keep_matrix`` keeps the (N, N) cosine matrix among the arrays."""
    native = c.detach().cpu()  # thresholds are compared in c's own dtype, like the policies do
    c = native.double()
    n, d = c.shape
    pr = participation_ratio(c)  # (N,)
    cos = cosine_matrix(c)  # (N, N)
    off = cos[~torch.eye(n, dtype=torch.bool)] if n > 1 else torch.empty(0, dtype=torch.float64)
    mean = c.mean(0)  # (D,)
    var = c.var(0, unbiased=False)  # (D,)
    mean_abs = c.abs().mean(0)  # (D,)
    k = head_k if head_k is not None else max(1, int(round(float(pr.mean()))))
    k = min(k, d)
    head_mag = torch.argsort(mean_abs, descending=True)[:k]
    head_var = torch.argsort(var, descending=True)[:k]
    summary = {
        "num_conditions": n,
        "dim": d,
        "cosine": {
            "mean": _finite(float(off.mean())) if off.numel() else None,
            "min": _finite(float(off.min())) if off.numel() else None,
            "max": _finite(float(off.max())) if off.numel() else None,
            "std": _finite(float(off.std())) if off.numel() > 1 else None,
        },
        "pr": {"mean": float(pr.mean()), "std": float(pr.std()) if n > 1 else 0.0,
               "min": float(pr.min()), "max": float(pr.max())},
        "npr": {"mean": float(pr.mean() / d), "std": float(pr.std() / d) if n > 1 else 0.0},
        "pr_of_mean_vector": float(participation_ratio(mean[None])[0]),
        "sparsity": sparsity_ratio(native, taus),
        "head_count": {f"{tau:g}": float((native.abs() >= tau).double().sum(1).mean()) for tau in taus},
        "variance": {"mean": float(var.mean()), "max": float(var.max()),
                     "top_k_share": float(var[head_var].sum() / var.sum()) if var.sum() > 0 else None},
        "norm": {"mean": float(c.norm(dim=1).mean())},
        "head_k": k,
        "head_by_magnitude": head_mag.tolist(),
        "head_by_variance": head_var.tolist(),
        "head_overlap": len(set(head_mag.tolist()) & set(head_var.tolist())) / k,
    }
    arrays = {"pr": pr.numpy(), "dim_mean": mean.numpy(), "dim_var": var.numpy(), "dim_mean_abs": mean_abs.numpy(),
              "sorted_mean_abs": torch.sort(mean_abs, descending=True).values.numpy()}
    if keep_matrix:
        arrays["cosine"] = cos.numpy()
    return EmbeddingStatistics(summary, arrays)


SWEEP_KEYS = ("cosine_mean", "cosine_min", "npr_mean", "pr_mean", "norm_mean", "variance_mean")


def _sweep_row(stats: dict) -> dict[str, Optional[float]]:
    return {"cosine_mean": stats["cosine"]["mean"], "cosine_min": stats["cosine"]["min"],
            "npr_mean": stats["npr"]["mean"], "pr_mean": stats["pr"]["mean"],
            "norm_mean": stats["norm"]["mean"], "variance_mean": stats["variance"]["mean"]}


def sweep_steps(num_steps: int, points: int) -> list[int]:
    """``points`` sampling-step indices spread evenly from the first step to the last (both included)."""
    if points >= num_steps:
        return list(range(num_steps))
    return sorted({round(i * (num_steps - 1) / (points - 1)) for i in range(points)}) if points > 1 else [0]


def _finite_parts(adapter, conditions: Any, t: torch.Tensor, step: int):
    """``adapter.embed_parts`` at timestep t, refusing a non-finite c (rows are the analysed conditions)."""
    parts = adapter.embed_parts(conditions, t)
    require_finite(parts.c, f"c of {adapter.name} at sampling step {step} (t={float(t):g}), rows = analysed conditions")
    return parts


def analyze(adapter, conditions: Any, *, taus: Sequence[float] = DEFAULT_TAUS, sweep_points: int = 20,
            step: int = 0) -> tuple[dict, dict[str, np.ndarray]]:
    """Statistics of c, of its condition part and of its timestep part, at ``step`` and over the trajectory.

    Returns a JSON-ready summary and the arrays (prefixed ``c_``, ``cond_``, ``sweep_``) the report plots.
    A c with NaN or infinite values raises :class:`~condbench.finite.NonFiniteError` naming the conditions.
    """
    timesteps = adapter.sampler_timesteps()  # (S,), model units, step 0 first
    t0 = timesteps[step]
    parts = _finite_parts(adapter, conditions, t0, step)
    full = embedding_statistics(parts.c, taus)
    cond_only = embedding_statistics(parts.cond, taus)
    t_vec = parts.t[:1].double()  # (1, D): the same for every condition
    c64 = parts.c.double()
    t_share = float(((t_vec * t_vec).sum() / (c64 * c64).sum(1)).mean())
    cos_c_t = float(torch.nn.functional.cosine_similarity(c64, t_vec.expand_as(c64), dim=1).mean())
    summary: dict[str, Any] = {
        "adapter": adapter.describe(),
        "step": step,
        "t": float(t0),
        "taus": list(taus),
        "pr_averaging": "per condition, then the mean over conditions",
        "c": full.summary,
        "cond_only": cond_only.summary,
        "t_only": {"pr": float(participation_ratio(t_vec)[0]), "npr": float(participation_ratio(t_vec)[0]) / t_vec.shape[1],
                   "norm": float(t_vec.norm()), "energy_share_in_c": t_share, "mean_cosine_with_c": cos_c_t},
    }
    arrays = {f"c_{k}": v for k, v in full.arrays.items()}
    arrays.update({f"cond_{k}": v for k, v in cond_only.arrays.items()})
    arrays["c_matrix"] = parts.c.double().cpu().numpy()
    arrays["cond_matrix"] = parts.cond.double().cpu().numpy()
    arrays["t_vector"] = t_vec[0].cpu().numpy()

    steps = sweep_steps(len(timesteps), sweep_points)
    rows = []
    for s in steps:
        p = _finite_parts(adapter, conditions, timesteps[s], s)
        rows.append({"step": s, "t": float(timesteps[s]),
                     **_sweep_row(embedding_statistics(p.c, taus, keep_matrix=False).summary)})
    summary["sweep"] = rows
    arrays["sweep_step"] = np.array(steps)
    arrays["sweep_t"] = np.array([r["t"] for r in rows])
    for key in SWEEP_KEYS:
        arrays[f"sweep_{key}"] = np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=np.float64)
    return summary, arrays
