"""Quality metrics: Frechet distance, Inception Score, class fidelity."""
from .classification import class_fidelity, inception_score
from .frechet import feature_statistics, frechet_distance

__all__ = ["class_fidelity", "feature_statistics", "frechet_distance", "inception_score"]
