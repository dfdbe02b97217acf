"""Paired comparisons against the baseline: every policy samples index i from the same noise, so the
change of a metric is estimated on the same indices, with a paired bootstrap over samples.

One set of resampled index vectors serves every policy of a model, and the baseline's score on each
resample is computed once. Set metrics (FID, IS) are recomputed on each resample; with a ``device`` the
tensors are moved there once and resampled there, so a GPU evaluator's FID never copies features per resample.

The interval is for the change at the run's sample size (what another seed would give on average). It is
the basic (pivotal) bootstrap interval with the pivot taken about the resampled differences' median:
``[delta - (q97.5 - m), delta + (m - q2.5)]``. Resampling with replacement duplicates samples, which shifts a
set metric such as FID by an amount that depends on each set's spread; when a policy changes the spread, the
raw percentiles of resampled differences are shifted away from the delta (they can exclude it). Measuring
the spread about m removes that shift, so the interval always contains the delta it is reported with.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

Score = Callable[..., dict[str, float]]
INTERVAL = ("95% basic bootstrap interval of the paired change, pivot about the median of the resampled "
            "differences (removes the shift resampling gives set metrics)")


def _to_device(arrays: Sequence[Any], device: torch.device) -> list[Any]:
    """Tensors moved to ``device`` (the same objects when already there); arrays (e.g. prompts) as they are."""
    return [a.to(device) if isinstance(a, torch.Tensor) else a for a in arrays]


def _resample(arrays: Sequence[Any], index: torch.Tensor) -> list[Any]:
    """The rows ``index`` (a CPU tensor) of every tensor, on its own device, and of every array."""
    return [a[index.to(a.device)] if isinstance(a, torch.Tensor) else a[index] for a in arrays]


def centred_interval(delta: float, differences: Sequence[float], level: float = 0.95) -> list[float]:
    """The basic bootstrap interval of ``delta`` from resampled ``differences``, pivoted about their median."""
    values = np.asarray(differences, dtype=np.float64)
    tail = 100 * (1 - level) / 2
    low, centre, high = np.percentile(values, [tail, 50, 100 - tail])
    return [float(delta - (high - centre)), float(delta + (centre - low))]


class PairedBootstrap:
    """Differences (policy - baseline) of every metric ``score`` returns, with 95% bootstrap intervals."""

    def __init__(self, score: Score, baseline: Sequence[torch.Tensor], resamples: int, seed: int = 0,
                 baseline_metrics: Optional[dict[str, float]] = None, device: str | torch.device = "cpu"):
        """``score`` is what each resample is scored with; ``baseline_metrics`` are the baseline's headline
        numbers when they come from another (exact, slower) formula than ``score``: each delta is then
        headline minus headline, and only its interval comes from the resamples. ``device``: where the
        tensors are resampled (the device ``score`` computes on)."""
        self.score = score
        self.device = torch.device(device)
        n = len(baseline[0])
        self.indices = torch.from_numpy(np.random.default_rng(seed).integers(0, n, size=(resamples, n)))
        self.baseline = baseline_metrics if baseline_metrics is not None else score(*baseline)
        baseline = _to_device(baseline, self.device)
        self.baseline_resampled = [score(*_resample(baseline, idx)) for idx in self.indices]

    def differences(self, data: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
        """The resampled differences (resamples,) of every metric the resampling score computes."""
        diffs: dict[str, list[float]] = {k: [] for k in self.baseline_resampled[0]}
        data = _to_device(data, self.device)
        for idx, base in zip(self.indices, self.baseline_resampled):
            resampled = self.score(*_resample(data, idx))
            for k in diffs:
                diffs[k].append(resampled[k] - base[k])
        return {k: np.asarray(v) for k, v in diffs.items()}

    def compare(self, data: Sequence[torch.Tensor], metrics: dict[str, float]) -> dict[str, dict]:
        """``metrics`` = the full score of ``data``; returns {metric: {delta, ci95, resamples}} for the metrics the
        resampling score computes (it may leave some out, e.g. ones that resampling with replacement distorts)."""
        out = {}
        for k, values in self.differences(data).items():
            if k not in metrics:
                continue
            delta = float(metrics[k] - self.baseline[k])
            out[k] = {"delta": delta, "ci95": centred_interval(delta, values), "resamples": len(values)}
        return out
