"""Quality metrics: Frechet distance, Inception Score, class fidelity."""

# the metric functions load on first use (PEP 562), so that the torch-free modules of this package
# (:mod:`condbench.metrics.weight_files`) can be imported without torch
_LAZY = {"class_fidelity": "classification", "inception_score": "classification", "feature_statistics": "frechet",
         "frechet_distance": "frechet"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["class_fidelity", "feature_statistics", "frechet_distance", "inception_score"]
