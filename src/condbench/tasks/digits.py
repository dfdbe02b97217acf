"""The built-in digits task: scikit-learn's bundled 8x8 digits (1,797 images, 10 classes, no download).

A tiny class-conditional DiT (official layout, DDPM sampler) generates 8x8 digits; a small CNN trained by
the project scores them: FID in its 128-d feature space against all 1,797 real digits, Inception Score
from its softmax, and class fidelity (top-1 accuracy against the requested class). Both networks ship in
the package and are reproduced by ``condbench train digits``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..adapters.dit_model import DiTConfig
from ..checkpoints import file_sha256, load_state_dict, load_strict, require_file
from . import asset_path
from .shipped import DIGITS_DIT
from ..metrics import class_fidelity, feature_statistics, frechet_distance, inception_score
from ..metrics.frechet import FrechetToReference

NUM_CLASSES = 10
IMAGE_SIZE = 8
FEATURE_DIM = 128  # the classifier's penultimate features: the FID space
CLASS_NAMES = [str(i) for i in range(NUM_CLASSES)]

# The tiny DiT of the digits task: 16 tokens of 2x2 patches, D = 96, learned sigma, a null row for CFG.
DIGITS_DIT_CONFIG = DiTConfig(input_size=8, patch_size=2, in_channels=1, hidden_size=DIGITS_DIT.hidden_size, depth=4,
                              num_heads=4, num_classes=NUM_CLASSES, class_dropout_prob=0.1, learn_sigma=True)
DIGITS_SAMPLER = DIGITS_DIT.sampler

ASSET_DIT = DIGITS_DIT.asset
ASSET_CLASSIFIER = "digits_classifier.safetensors"
ASSET_TRACK = "digits_train_track.json"
CLASSIFIER_PROTOCOL = ("digits-cnn: FID on 128-d penultimate features vs all 1,797 real digits (unbiased covariance, "
                       "scipy sqrtm); IS from its 10-way softmax, one split; class fidelity = top-1 accuracy vs "
                       "the requested class")


def load_digits_images() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 digits as images (N, 1, 8, 8) in [-1, 1] and labels (N,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 8.0 - 1.0).unsqueeze(1)  # 0..16 -> [-1, 1]
    return images, torch.from_numpy(data.target.astype(np.int64))


def classifier_split(n: int, seed: int = 0, test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed train/test split of indices for the digits classifier."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return order[n_test:], order[:n_test]


class DigitsClassifier(nn.Module):
    """conv(1->32) -> conv(32->64) -> maxpool -> fc(1024->128) = features -> fc(128->10) = logits."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 64, 3, padding=1),
                                  nn.ReLU(), nn.MaxPool2d(2))
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU())
        self.head = nn.Linear(FEATURE_DIM, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 1, 8, 8) in [-1, 1] -> features (N, 128), logits (N, 10)."""
        features = self.features(self.conv(x))
        return features, self.head(features)


def load_classifier(path: Optional[str | Path] = None) -> tuple[DigitsClassifier, dict]:
    """The project's digits classifier (the shipped one unless ``path`` is given)."""
    path = require_file(path or asset_path(ASSET_CLASSIFIER), "digits classifier",
                        "run `condbench train digits` to train it, or pass --classifier PATH")
    model = DigitsClassifier()
    load_strict(model, load_state_dict(path), source=str(path))
    return model.eval(), {"path": str(path), "sha256": file_sha256(path)}


@dataclass
class DigitsEvaluator:
    """Scores generated digits with the project's classifier against the real digits."""

    classifier: DigitsClassifier
    classifier_info: dict
    real_mu: np.ndarray
    real_sigma: np.ndarray
    _fast: Optional[FrechetToReference] = field(default=None, init=False, repr=False)  # for bootstrap_score

    @classmethod
    def create(cls, classifier_path: Optional[str | Path] = None) -> "DigitsEvaluator":
        classifier, info = load_classifier(classifier_path)
        images, _ = load_digits_images()
        features, _ = run_classifier(classifier, images)
        mu, sigma = feature_statistics(features.numpy())
        return cls(classifier, info, mu, sigma)

    def features(self, images01: torch.Tensor, labels: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and logits of images in [0, 1] (N, 1, 8, 8) (their labels are not needed here)."""
        return run_classifier(self.classifier, images01 * 2 - 1)

    def score(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
        """FID, IS and class fidelity of one set of generated samples."""
        mu, sigma = feature_statistics(features.numpy())
        is_mean, _ = inception_score(logits)
        return {"fid": frechet_distance(mu, sigma, self.real_mu, self.real_sigma), "is": is_mean,
                "class_fidelity": class_fidelity(logits, labels)}

    def bootstrap_score(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> dict:
        """As :meth:`score`, with FID through one symmetric eigen-decomposition (within 1e-6 of it, see tests): the
        paired bootstrap scores every cell 200 times, where scipy's general square root took most of the time."""
        if self._fast is None:
            self._fast = FrechetToReference(self.real_mu, self.real_sigma)
        return {"fid": self._fast.distance(features.numpy()), "is": inception_score(logits)[0],
                "class_fidelity": class_fidelity(logits, labels)}


@torch.no_grad()
def run_classifier(model: DigitsClassifier, images: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 128) and logits (N, 10) of images in [-1, 1], computed in batches."""
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f, l = model(images[start:start + batch_size].float())
        feats.append(f)
        logits.append(l)
    return torch.cat(feats), torch.cat(logits)


class DigitsTask:
    """Class-conditional generation of the 10 digits; balanced conditions ``arange(10).repeat(n)``."""

    name = "digits"
    condition_kind = "class"
    default_model = "dit-digits"
    grid_count = 8 * NUM_CLASSES  # samples kept for the report's grids: 8 of every class
    resampled_frechet_dims = {"fid": FEATURE_DIM}  # what each bootstrap resample recomputes (on the CPU)
    headline_metrics = ("fid", "is", "class_fidelity")  # the report's across-tasks columns
    class_names = CLASS_NAMES

    def __init__(self, samples_per_class: int = 100, classifier: Optional[str] = None):
        if samples_per_class < 1:
            raise ValueError("samples_per_class must be >= 1")
        self.samples_per_class = samples_per_class
        self.classifier_path = classifier
        self._evaluator: Optional[DigitsEvaluator] = None

    @property
    def num_samples(self) -> int:
        return self.samples_per_class * NUM_CLASSES

    def conditions(self) -> torch.Tensor:
        """Class id of every sample index (N,), class-balanced and interleaved like MG's sampler."""
        return torch.arange(NUM_CLASSES).repeat(self.samples_per_class)

    def analysis_conditions(self) -> torch.Tensor:
        """Every condition once: the 10 classes."""
        return torch.arange(NUM_CLASSES)

    @property
    def evaluator(self) -> DigitsEvaluator:
        if self._evaluator is None:
            self._evaluator = DigitsEvaluator.create(self.classifier_path)
        return self._evaluator

    def training_track(self) -> Optional[dict]:
        """The cosine/nPR track recorded while the shipped DiT was trained (``train digits --track``), if shipped."""
        path = asset_path(ASSET_TRACK)
        return json.loads(path.read_text()) if path.is_file() else None

    def describe(self) -> dict:
        return {"task": self.name, "samples_per_class": self.samples_per_class, "num_samples": self.num_samples,
                "metric_protocol": CLASSIFIER_PROTOCOL, "classifier": self.evaluator.classifier_info}
