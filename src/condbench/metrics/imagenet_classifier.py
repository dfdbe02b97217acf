"""Class fidelity: top-1 accuracy of an ImageNet classifier on the samples against the class each was generated for.

Default classifier: torchvision ResNet-50 with IMAGENET1K_V2 weights and their own preprocessing (resize 232,
centre crop 224, ImageNet normalisation). Weights come from the torch hub cache only; a missing file is an
error that names it, its URL and where it was looked for.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from .inception import as_uint8_images
from .weight_files import classifier_weights_path

DEFAULT_ARCH = "resnet50"
DEFAULT_WEIGHTS = "IMAGENET1K_V2"


class ClassFidelity:
    """Accumulates per-sample top-1 hits of ``model(preprocess(uint8 images))`` against requested labels."""

    def __init__(self, model: nn.Module, preprocess: Callable[[torch.Tensor], torch.Tensor], name: str,
                 device: str | torch.device = "cpu", batch_size: int = 64):
        self.model = model.to(device).eval()
        self.preprocess = preprocess
        self.name = name
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._hits: list[np.ndarray] = []

    @classmethod
    def torchvision(cls, arch: str = DEFAULT_ARCH, weights: str = DEFAULT_WEIGHTS,
                    device: str | torch.device = "cpu", batch_size: int = 64) -> "ClassFidelity":
        """A torchvision classifier with released ImageNet weights, read from the torch hub cache (no download)."""
        from torchvision.models import get_model, get_model_weights

        spec = get_model_weights(arch)[weights]
        path = classifier_weights_path(f"{arch}:{weights}", Path(torch.hub.get_dir()))
        model = get_model(arch, weights=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model, spec.transforms(), f"torchvision {arch} {weights}", device, batch_size)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Top-1 class of each image (N,); images uint8 (N, 3, H, W) or float in [0, 1]."""
        images = as_uint8_images(images)
        preds = [self.model(self.preprocess(chunk.to(self.device))).argmax(dim=1).cpu()
                 for chunk in images.split(self.batch_size)]
        return torch.cat(preds)

    def update(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self._hits.append((self.predict(images) == torch.as_tensor(labels).cpu()).numpy())

    def hits(self) -> np.ndarray:
        """Whether each sample was classified as its requested class (N,) bool, in order (for bootstraps)."""
        if not self._hits:
            raise ValueError("no images were added")
        return np.concatenate(self._hits)

    def compute(self) -> dict:
        hits = self.hits()
        return {"class_fidelity": float(hits.mean()),
                "protocol": {"classifier": self.name, "metric": "top-1 accuracy against the requested class",
                             "sample_count": len(hits)}}
