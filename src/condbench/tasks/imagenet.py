"""ImageNet 256x256 class-conditional generation, scored with the ADM evaluator protocol.

Conditions are class-balanced and interleaved like MG's sampler (``arange(1000).repeat(n)``: sample i has
class ``i % 1000``), so every prefix of the sample indices is as balanced as it can be; the study uses 5 per
class (5,000 samples). The 1,000 class names ship with the package (for CLIP prompts and the report). The
reference batch ``VIRTUAL_imagenet256_labeled.npz`` (ADM's) is downloaded once or given as a local path.
"""
from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

import torch

from ..hub import WeightSource, resolve_weights
from . import asset_path

NUM_CLASSES = 1000
REFERENCE_BATCH = WeightSource(
    "VIRTUAL_imagenet256_labeled.npz",
    "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz")


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in class-id order (torchvision's list, shipped with the package)."""
    return json.loads(asset_path("imagenet_classes.json").read_text())


class ImageNetTask:
    """ImageNet 256 class-conditional: conditions, class names, reference batch and the metric set."""

    name = "imagenet"
    condition_kind = "class"
    default_model = "dit-xl-2"
    grid_count = 32  # samples kept for the report's grids (the first 32 classes, one each)

    def __init__(self, samples_per_class: int = 5, reference_batch: Optional[str] = None, **metric_options):
        if not 1 <= samples_per_class <= 50:
            raise ValueError(f"samples_per_class must be in 1..50 (5 = the study's 5,000 samples; 50 = FID-50k), "
                             f"got {samples_per_class}")
        self.samples_per_class = samples_per_class
        self.reference_batch = reference_batch
        self.metric_options = metric_options

    @cached_property
    def class_names(self) -> list[str]:
        return imagenet_class_names()

    @property
    def num_samples(self) -> int:
        return self.samples_per_class * NUM_CLASSES

    def conditions(self) -> torch.Tensor:
        """Class id of every sample index (N,): ``arange(1000).repeat(samples_per_class)``."""
        return torch.arange(NUM_CLASSES).repeat(self.samples_per_class)

    def analysis_conditions(self) -> torch.Tensor:
        """Every condition once: the 1,000 classes (the study's Table 1)."""
        return torch.arange(NUM_CLASSES)

    def prompts(self, labels: torch.Tensor) -> list[str]:
        """CLIP prompts for class ids: "a photo of a {class name}"."""
        return [f"a photo of a {self.class_names[int(y)]}" for y in labels]

    def reference_batch_path(self) -> Path:
        """The reference batch: the ``reference_batch`` option, else the cached copy, else a one-time download."""
        return resolve_weights(REFERENCE_BATCH, self.reference_batch, what="ADM reference batch",
                               option="the task option reference_batch (suite task_options)")

    def required_inputs(self) -> list[Callable[[], Path]]:
        """Resolvers of every file the metrics need; the run's preflight calls each before any sampling."""
        return [self.reference_batch_path]

    def describe(self) -> dict:
        return {"task": self.name, "samples_per_class": self.samples_per_class, "num_samples": self.num_samples,
                "reference_batch": REFERENCE_BATCH.filename, "metric_options": self.metric_options}
