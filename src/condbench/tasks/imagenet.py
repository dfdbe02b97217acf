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

from ..hub import offline
from ..metrics.adm import PR_DISTANCE_PROTOCOL
from ..metrics.inception import POOL_DIM, SFID_DIM
from ..metrics.weight_files import CLASSIFIER, CLIP_MODEL, REFERENCE_BATCH, inception_weights_path, reference_batch_path
from . import asset_path, metric_device
from .imagenet_metrics import ImageNetEvaluator

NUM_CLASSES = 1000


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names in class-id order (torchvision's list, shipped with the package)."""
    return json.loads(asset_path("imagenet_classes.json").read_text())


class ImageNetTask:
    """ImageNet 256 class-conditional: conditions, class names, reference batch and the metric set.

    Options: ``samples_per_class`` (5 = the study's 5,000 samples; 50 = FID-50k); ``classes`` (only the first
    K classes, for quick checks: numbers are then not comparable with the literature); ``reference_batch``,
    ``inception_weights`` (local paths; else the cache or a one-time download); ``clip_model`` (a hub id or a
    directory; None turns the CLIP score off); ``classifier`` ("ARCH:WEIGHTS" of torchvision, read from the
    torch hub cache; None turns class fidelity off); ``precision_recall`` (default on); ``pr_distance``
    ("float16": the ADM evaluator's float16 distance blocks, as published numbers; "exact": float64); ``device``
    (of Inception, CLIP, the classifier and the bootstrap's float64 FID/sFID; default: CUDA when available).
    """

    name = "imagenet"
    condition_kind = "class"
    default_model = "dit-xl-2"
    grid_count = 32  # samples kept for the report's grids (the first 32 classes, one each)
    resampled_frechet_dims = {"fid": POOL_DIM, "sfid": SFID_DIM}  # what each bootstrap resample recomputes
    headline_metrics = ("fid", "sfid", "is", "precision", "recall")  # the report's across-tasks columns

    def __init__(self, samples_per_class: int = 5, classes: int = NUM_CLASSES, reference_batch: Optional[str] = None,
                 inception_weights: Optional[str] = None, clip_model: Optional[str] = CLIP_MODEL,
                 classifier: Optional[str] = CLASSIFIER, precision_recall: bool = True,
                 pr_distance: str = "float16", device: Optional[str] = None):
        if not 1 <= samples_per_class <= 50:
            raise ValueError(f"samples_per_class must be in 1..50 (5 = the study's 5,000 samples; 50 = FID-50k), "
                             f"got {samples_per_class}")
        if not 1 <= classes <= NUM_CLASSES:
            raise ValueError(f"classes must be in 1..{NUM_CLASSES}, got {classes}")
        self.samples_per_class = samples_per_class
        self.classes = classes
        self.reference_batch = reference_batch
        self.inception_weights = inception_weights
        self.clip_model = clip_model
        self.classifier = classifier
        self.precision_recall = precision_recall
        if pr_distance not in PR_DISTANCE_PROTOCOL:
            raise ValueError(f"pr_distance must be one of {sorted(PR_DISTANCE_PROTOCOL)}, got {pr_distance!r}")
        self.pr_distance = pr_distance
        self.device = metric_device(device)
        self._evaluator: Optional[ImageNetEvaluator] = None

    @cached_property
    def class_names(self) -> list[str]:
        return imagenet_class_names()

    @property
    def num_samples(self) -> int:
        return self.samples_per_class * self.classes

    def conditions(self) -> torch.Tensor:
        """Class id of every sample index (N,): ``arange(classes).repeat(samples_per_class)``."""
        return torch.arange(self.classes).repeat(self.samples_per_class)

    def analysis_conditions(self) -> torch.Tensor:
        """Every condition once: the 1,000 classes (the study's Table 1)."""
        return torch.arange(NUM_CLASSES)

    def reference_batch_path(self) -> Path:
        """The reference batch: the ``reference_batch`` option, else the cached copy, else a one-time download."""
        return reference_batch_path(self.reference_batch)

    def inception_weights_path(self) -> Path:
        return inception_weights_path(self.inception_weights, download=not offline())

    def required_inputs(self) -> list[Callable[[], object]]:
        """Resolvers of every file the metrics need; the run's preflight calls each before any sampling."""
        checks: list[Callable[[], object]] = [self.reference_batch_path, self.inception_weights_path]
        if self.clip_model:
            checks.append(lambda: self.clip_scorer)
        if self.classifier:
            checks.append(lambda: self.class_classifier)
        return checks

    @cached_property
    def clip_scorer(self):
        """The CLIP scorer, loaded once (the preflight's check is the load the evaluator then uses)."""
        from ..metrics.clip_score import ClipScore

        return ClipScore(self.clip_model, device=self.device)

    @cached_property
    def class_classifier(self):
        """The class-fidelity classifier, loaded once."""
        from ..metrics.imagenet_classifier import ClassFidelity

        arch, _, weights = self.classifier.partition(":")
        return ClassFidelity.torchvision(arch, weights or "DEFAULT", device=self.device)

    @property
    def evaluator(self) -> ImageNetEvaluator:
        """The metric set, built on first use (the Inception network, the reference batch, CLIP, the classifier)."""
        if self._evaluator is None:
            from ..metrics.inception import InceptionFeatures
            from ..metrics.reference_batch import ReferenceBatch

            self._evaluator = ImageNetEvaluator(
                InceptionFeatures.load(self.inception_weights_path(), device=self.device),
                ReferenceBatch.load(self.reference_batch_path()),
                [f"a photo of a {name}" for name in self.class_names],
                clip=self.clip_scorer if self.clip_model else None,
                classifier=self.class_classifier if self.classifier else None, precision_recall=self.precision_recall,
                pr_distance=self.pr_distance, device=self.device)
        return self._evaluator

    def describe(self) -> dict:
        return {"task": self.name, "samples_per_class": self.samples_per_class, "classes": self.classes,
                "num_samples": self.num_samples, "reference_batch": REFERENCE_BATCH.filename,
                "metric_options": {"inception_weights": self.inception_weights, "clip_model": self.clip_model,
                                   "classifier": self.classifier, "precision_recall": self.precision_recall,
                                   "pr_distance": self.pr_distance},
                "metric_protocol": self.evaluator.protocol_line()}
