"""Metrics from a classifier's outputs: Inception Score and class fidelity."""
from __future__ import annotations

import numpy as np
import torch


def inception_score(logits: torch.Tensor, split_size: int | None = None) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over consecutive splits of ``split_size`` (None: one split); (mean, std).

    Splits are taken in order (the ADM protocol), not shuffled; a trailing partial split is dropped
    unless it is the only one.
    """
    log_p = torch.log_softmax(logits.double(), dim=1)  # (N, K)
    n = len(log_p)
    size = n if split_size is None or split_size >= n else split_size
    scores = []
    for start in range(0, n - size + 1, size):
        part = log_p[start:start + size]
        log_marginal = torch.logsumexp(part, dim=0) - np.log(len(part))  # (K,)
        kl = (part.exp() * (part - log_marginal)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def class_fidelity(logits: torch.Tensor, requested: torch.Tensor) -> float:
    """Fraction of samples the classifier assigns to the class they were generated for (top-1)."""
    return float((logits.argmax(dim=1).cpu() == requested.cpu()).double().mean())
