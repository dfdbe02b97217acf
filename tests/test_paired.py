"""Paired bootstrap of metric changes against the baseline."""
import pytest
import torch

from condbench.metrics import class_fidelity
from condbench.paired import PairedBootstrap


def score(logits, labels):
    return {"class_fidelity": class_fidelity(logits, labels), "mean_logit": float(logits.max(1).values.mean())}


def make(n=400, wrong=0):
    labels = torch.arange(n) % 4
    logits = torch.nn.functional.one_hot(labels, 4).float()
    logits[:wrong] = torch.nn.functional.one_hot((labels[:wrong] + 1) % 4, 4).float()
    return logits, labels


def test_identical_cells_have_zero_change():
    comparison = PairedBootstrap(score, make(), resamples=50)
    out = comparison.compare(make(), score(*make()))
    assert out["class_fidelity"] == {"delta": 0.0, "ci95": [0.0, 0.0], "resamples": 50}


def test_a_real_change_is_estimated_with_an_interval_that_excludes_zero():
    comparison = PairedBootstrap(score, make(), resamples=300, seed=1)
    policy = make(wrong=40)  # 10% of the samples change class
    change = comparison.compare(policy, score(*policy))["class_fidelity"]
    assert change["delta"] == pytest.approx(-0.1)
    low, high = change["ci95"]
    assert low < -0.1 < high and high < 0
    # pairing: the interval of a paired difference of n Bernoulli changes is about 2 * 1.96 * sqrt(p(1-p)/n)
    assert high - low == pytest.approx(2 * 1.96 * (0.1 * 0.9 / 400) ** 0.5, rel=0.3)


def test_resamples_are_shared_between_policies():
    comparison = PairedBootstrap(score, make(), resamples=20, seed=3)
    first = comparison.compare(make(wrong=8), score(*make(wrong=8)))
    second = comparison.compare(make(wrong=8), score(*make(wrong=8)))
    assert first == second
