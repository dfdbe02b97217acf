"""The ImageNet metric set, split into per-sample outputs (cached with each shard) and set metrics.

``features`` turns a chunk of decoded samples into what the runner caches per sample: the Inception pool_3
(2048) and sFID (2023) features, and the per-sample outputs (the 1008 unbiased Inception logits for IS, the
classifier's top-1 class, the CLIP score). ``score`` computes, from those alone, the ADM-protocol FID, sFID,
IS and Precision/Recall against the reference batch, the CLIP score and class fidelity; nothing is sampled or
decoded again, so ``condbench score`` re-scores from the cache.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ..metrics.adm import IS_SPLIT_SIZE, PR_DISTANCE_PROTOCOL, PR_NEIGHBOURS, adm_inception_score, precision_recall
from ..metrics.frechet import FrechetToReference, feature_statistics, frechet_distance
from ..metrics.inception import LOGIT_DIM, POOL_DIM, InceptionFeatures, as_uint8_images

NO_VALUE = float("nan")


class ImageNetEvaluator:
    """ADM FID/sFID/IS/P/R, CLIP score and class fidelity of class-conditional ImageNet samples."""

    def __init__(self, inception: InceptionFeatures, reference, prompts: list[str], clip=None, classifier=None,
                 precision_recall: bool = True, pr_distance: str = "float16", batch_size: int = 50,
                 device: str | torch.device = "cpu"):
        """``device``: where the bootstrap's FID/sFID/IS (float64) and Precision/Recall are computed; the metric
        networks are moved by their owner (the task builds them on the same device)."""
        self.inception = inception
        self.reference = reference
        self.prompts = prompts  # one per class id
        self.clip = clip
        self.classifier = classifier
        self.precision_recall = precision_recall
        self.pr_distance = pr_distance
        self.batch_size = batch_size
        self.device = torch.device(device)
        self._reference_pool: Optional[np.ndarray] = None
        self._fast: Optional[tuple[FrechetToReference, FrechetToReference]] = None

    @torch.no_grad()
    def features(self, images01: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) in [0, 1] of classes ``labels`` -> features (N, 2048 + 2023) and per-sample
        outputs (N, 1008 + 2): IS logits, the classifier's top-1 class, the CLIP score (NaN when off)."""
        images = as_uint8_images(images01)  # quantised as DiT's sampler saves samples
        feats, outputs = [], []
        for chunk, chunk_labels in zip(images.split(self.batch_size), labels.split(self.batch_size)):
            out = self.inception(chunk)
            n = len(chunk)
            predicted = (self.classifier.predict(chunk).float() if self.classifier is not None
                         else torch.full((n,), NO_VALUE))
            clip = (self.clip.score(chunk, [self.prompts[int(y)] for y in chunk_labels]) if self.clip is not None
                    else torch.full((n,), NO_VALUE))
            feats.append(torch.cat([out.pool, out.spatial], dim=1).cpu())
            outputs.append(torch.cat([out.logits.cpu(), predicted[:, None], clip[:, None].float()], dim=1))
        return torch.cat(feats), torch.cat(outputs)

    def reference_pool(self) -> np.ndarray:
        """pool_3 features of the reference images (for Precision/Recall), computed once and kept in a sidecar."""
        if self._reference_pool is None:
            self._reference_pool = self.reference.pool_features(self.inception)
        return self._reference_pool

    def _split(self, features, outputs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        features, outputs = np.asarray(features, dtype=np.float64), np.asarray(outputs, dtype=np.float64)
        return (features[:, :POOL_DIM], features[:, POOL_DIM:], outputs[:, :LOGIT_DIM], outputs[:, LOGIT_DIM],
                outputs[:, LOGIT_DIM + 1])

    def _per_sample(self, predicted: np.ndarray, clip: np.ndarray, labels) -> dict[str, float]:
        out = {}
        labels = torch.as_tensor(labels).cpu().numpy()
        if self.clip is not None:
            out["clip_score"] = max(float(np.mean(clip)), 0.0)  # torchmetrics' CLIPScore.compute
        if self.classifier is not None:
            out["class_fidelity"] = float(np.mean(predicted == labels))
        return out

    def score(self, features, outputs, labels) -> dict[str, float]:
        """Every metric of one set of samples (the ADM evaluator's formulas)."""
        pool, spatial, logits, predicted, clip = self._split(features, outputs)
        r = self.reference
        result = {"fid": frechet_distance(*feature_statistics(pool), r.mu, r.sigma),
                  "sfid": frechet_distance(*feature_statistics(spatial), r.mu_s, r.sigma_s)}
        result["is"], result["is_std"], _ = adm_inception_score(logits, IS_SPLIT_SIZE)
        if self.precision_recall:
            result["precision"], result["recall"] = precision_recall(pool, self.reference_pool(), PR_NEIGHBOURS,
                                                                  self.device, self.pr_distance)
        return {**result, **self._per_sample(predicted, clip, labels)}

    @property
    def bootstrap_device(self) -> torch.device:
        """Where :meth:`bootstrap_score` computes: a paired bootstrap holds and resamples the data there."""
        return self.device

    def bootstrap_score(self, features, outputs, labels) -> dict[str, float]:
        """The metrics a paired bootstrap resamples: FID/sFID through one symmetric eigen-decomposition each
        (equal to the sqrtm formula to float64 rounding, many times faster), IS, CLIP score, class fidelity.
        Precision/Recall are left out: duplicated samples in a resample shrink their k-NN radii to zero. FID, sFID
        and IS are computed in float64 on ``device`` (the inputs may already be there); on the CPU the arithmetic
        is the same as :meth:`score`'s inputs give (float64 copies of the float32 features)."""
        if self._fast is None:
            r = self.reference
            self._fast = (FrechetToReference(r.mu, r.sigma, self.device),
                          FrechetToReference(r.mu_s, r.sigma_s, self.device))
        features = torch.as_tensor(features).to(self.device, torch.float64)  # (N, 2048 + 2023)
        outputs = torch.as_tensor(outputs).to(self.device, torch.float64)  # (N, 1008 + 2)
        per_sample = outputs[:, LOGIT_DIM:].cpu().numpy()  # (N, 2): the classifier's class, the CLIP score
        result = {"fid": self._fast[0].distance(features[:, :POOL_DIM]),
                  "sfid": self._fast[1].distance(features[:, POOL_DIM:]),
                  "is": adm_inception_score(outputs[:, :LOGIT_DIM], IS_SPLIT_SIZE)[0]}
        return {**result, **self._per_sample(per_sample[:, 0], per_sample[:, 1], labels)}

    def protocol_line(self) -> str:
        """How every number was computed, in one line for each result record."""
        p = self.inception.protocol()
        parts = [f"ADM evaluator protocol, PyTorch port on {p['network']} (weights {p['weights']}, sha256 "
                 f"{p['weights_sha256'][:16]}): FID on {p['fid_features']}, sFID on mixed_6/conv[:7] (2023), "
                 f"vs {self.reference.path.name} statistics, scipy sqrtm; IS from {p['is_logits']}, splits of "
                 f"{IS_SPLIT_SIZE} in sample order"]
        if self.precision_recall:
            parts.append(f"Precision/Recall k={PR_NEIGHBOURS} vs the reference images' pool_3 features, "
                         f"{PR_DISTANCE_PROTOCOL[self.pr_distance]}")
        if self.clip is not None:
            parts.append(f"CLIP score 100*cos(image, 'a photo of a {{class name}}'), model {self.clip.model_name}, "
                         "mean clipped at 0")
        if self.classifier is not None:
            parts.append(f"class fidelity = top-1 accuracy of {self.classifier.name} vs the requested class")
        parts.append("samples quantised to uint8 as DiT's sampler saves them; paired-bootstrap intervals use the "
                     "eigenvalue form of FID and leave Precision/Recall out")
        return "; ".join(parts)
