"""Paired comparisons against the baseline: every policy samples index i from the same noise, so the
change of a metric is estimated on the same indices, with a paired bootstrap over samples.

One set of resampled index vectors serves every policy of a model, and the baseline's score on each
resample is computed once. Set metrics (FID, IS) are recomputed on each resample; the interval is the
2.5-97.5 percentile of the resampled differences (resampling with replacement biases FID upwards for
both sides alike; the difference is what is reported).
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

Score = Callable[..., dict[str, float]]


class PairedBootstrap:
    """Differences (policy - baseline) of every metric ``score`` returns, with 95% bootstrap intervals."""

    def __init__(self, score: Score, baseline: Sequence[torch.Tensor], resamples: int, seed: int = 0,
                 baseline_metrics: Optional[dict[str, float]] = None):
        """``score`` is what each resample is scored with; ``baseline_metrics`` are the baseline's headline
        numbers when they come from another (exact, slower) formula than ``score``: each delta is then
        headline minus headline, and only its interval comes from the resamples."""
        self.score = score
        n = len(baseline[0])
        self.indices = torch.from_numpy(np.random.default_rng(seed).integers(0, n, size=(resamples, n)))
        self.baseline = baseline_metrics if baseline_metrics is not None else score(*baseline)
        self.baseline_resampled = [score(*(a[idx] for a in baseline)) for idx in self.indices]

    def compare(self, data: Sequence[torch.Tensor], metrics: dict[str, float]) -> dict[str, dict]:
        """``metrics`` = the full score of ``data``; returns {metric: {delta, ci95, resamples}} for the metrics the
        resampling score computes (it may leave some out, e.g. ones that resampling with replacement distorts)."""
        diffs: dict[str, list[float]] = {k: [] for k in metrics if k in self.baseline_resampled[0]}
        for idx, base in zip(self.indices, self.baseline_resampled):
            resampled = self.score(*(a[idx] for a in data))
            for k in diffs:
                diffs[k].append(resampled[k] - base[k])
        out = {}
        for k, values in diffs.items():
            low, high = np.percentile(values, [2.5, 97.5])
            out[k] = {"delta": float(metrics[k] - self.baseline[k]), "ci95": [float(low), float(high)],
                      "resamples": len(values)}
        return out
