"""The files the imagenet task reads, checked without building the task (torch-free): the run's preflight
names every missing one before torch is imported. The task object checks the same files and then loads them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from ..hub import offline
from ..metrics.weight_files import (CLASSIFIER, CLIP_MODEL, classifier_weights_path, inception_weights_path,
                                    reference_batch_path, require_clip_model)


def imagenet_inputs(reference_batch: Optional[str | Path] = None, inception_weights: Optional[str | Path] = None,
                    clip_model: Optional[str] = CLIP_MODEL, classifier: Optional[str] = CLASSIFIER,
                    **other_options: Any) -> list[Callable[[], object]]:
    """One check per file of the task options (the options that name no file are the task's to check)."""
    checks: list[Callable[[], object]] = [lambda: reference_batch_path(reference_batch),
                                          lambda: inception_weights_path(inception_weights, download=not offline())]
    if clip_model:
        checks.append(lambda: require_clip_model(clip_model))
    if classifier:
        checks.append(lambda: classifier_weights_path(classifier))
    return checks
