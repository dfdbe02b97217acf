"""The digits task's resampling score (used 200 times per cell by the paired bootstrap) against its headline score."""
import torch

from condbench.tasks.digits import DigitsEvaluator, load_digits_images, run_classifier


def test_bootstrap_score_equals_the_headline_score_within_1e6():
    """Measured: 1.2e-7 of the FID apart (the classifier's features have a near-singular covariance, where scipy's
    general square root and the symmetric eigen-decomposition round differently); far inside any bootstrap interval."""
    evaluator = DigitsEvaluator.create()
    images, labels = load_digits_images()
    generator = torch.Generator().manual_seed(0)
    noisy = (images[:600] + 0.3 * torch.randn(images[:600].shape, generator=generator)).clamp(-1, 1)  # (N, 1, 8, 8)
    features, logits = run_classifier(evaluator.classifier, noisy)
    headline = evaluator.score(features, logits, labels[:600])
    fast = evaluator.bootstrap_score(features, logits, labels[:600])
    assert headline["fid"] > 1.0  # a real distance, not two copies of the reference
    assert abs(fast["fid"] - headline["fid"]) <= 1e-6 * headline["fid"]
    assert fast["is"] == headline["is"] and fast["class_fidelity"] == headline["class_fidelity"]
