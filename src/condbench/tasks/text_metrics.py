"""The text-to-image metric set: CLIP score against each sample's own prompt, and clean-FID against a folder.

``features`` turns a chunk of decoded samples into what the runner caches per sample: the clean-resized
Inception pool_3 features (2048; none when FID is off) and the CLIP score (NaN when off). ``score`` computes
FID and the mean CLIP score from those alone, so ``condbench score`` re-scores from the cache.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ..metrics.clean_fid import FolderReference, clean_pool_features, protocol
from ..metrics.clip_score import ClipScore, clip_score_of
from ..metrics.frechet import FrechetToReference, feature_statistics, frechet_distance
from ..metrics.inception import InceptionFeatures, as_uint8_images

NO_VALUE = float("nan")


class TextEvaluator:
    """FID (clean-fid protocol) vs a reference folder and CLIP score vs the prompt, of generated images."""

    def __init__(self, image_size: int, inception: Optional[InceptionFeatures] = None,
                 reference: Optional[FolderReference] = None, clip: Optional[ClipScore] = None, batch_size: int = 50):
        if (inception is None) != (reference is None):
            raise ValueError("FID needs both the Inception network and the reference statistics")
        self.image_size = image_size
        self.inception = inception
        self.reference = reference
        self.clip = clip
        self.batch_size = batch_size
        self._fast: Optional[FrechetToReference] = None

    @torch.no_grad()
    def features(self, images01: torch.Tensor, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) in [0, 1] generated from ``prompts`` -> features (N, 2048 or 0), outputs (N, 1)."""
        images = as_uint8_images(images01)  # quantised as a saved PNG would be
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images are {tuple(images.shape[-2:])} but the task's image_size (the size its FID "
                             f"reference was resized to) is {self.image_size}: set the task option image_size")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        n = len(images)
        feats = (clean_pool_features(self.inception, images, self.batch_size) if self.inception is not None
                 else torch.empty(n, 0))
        clip = (torch.cat([self.clip.score(chunk, list(prompts[a:a + len(chunk)]))
                           for a, chunk in zip(range(0, n, self.batch_size), images.split(self.batch_size))])
                if self.clip is not None else torch.full((n,), NO_VALUE))
        return feats.float(), clip[:, None].float()

    def _clip(self, outputs) -> dict[str, float]:
        return {"clip_score": clip_score_of(np.asarray(outputs, dtype=np.float64)[:, 0])} if self.clip is not None else {}

    def score(self, features, outputs, labels=None) -> dict[str, float]:
        """FID against the reference folder and the mean CLIP score (torchmetrics' reduction)."""
        result = {}
        if self.reference is not None:
            result["fid"] = frechet_distance(*feature_statistics(np.asarray(features)), self.reference.mu,
                                             self.reference.sigma)
        return {**result, **self._clip(outputs)}

    def bootstrap_score(self, features, outputs, labels=None) -> dict[str, float]:
        """The same metrics for paired-bootstrap resamples (FID through the eigenvalue form)."""
        result = {}
        if self.reference is not None:
            if self._fast is None:
                self._fast = FrechetToReference(self.reference.mu, self.reference.sigma)
            result["fid"] = self._fast.distance(np.asarray(features, dtype=np.float64))
        return {**result, **self._clip(outputs)}

    def protocol(self) -> dict:
        out: dict = {}
        if self.reference is not None:
            out["fid"] = {**protocol(self.image_size, self.inception), "reference_folder": str(self.reference.folder),
                          "reference_images": self.reference.count, "reference_key": self.reference.key}
        if self.clip is not None:
            out["clip_score"] = {**self.clip.protocol(), "prompt": "the sample's own generation prompt (truncated "
                                                                   "to CLIP's 77 tokens)"}
            out["clip_score"].pop("sample_count", None)
        return out

    def protocol_line(self) -> str:
        parts = []
        if self.reference is not None:
            parts.append(f"FID clean-fid 'clean' resize + torch-fidelity Inception pool_3 vs {self.reference.count} "
                         f"reference images of {self.reference.folder} (center crop, bicubic to {self.image_size})")
        if self.clip is not None:
            parts.append(f"CLIP score 100*cos(image, its prompt), model {self.clip.model_name}, mean clipped at 0")
        return "; ".join(parts) or "no metric (FID and CLIP score both off)"
