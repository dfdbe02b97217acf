"""The pose-guided metric set (PIDM protocol), split into per-sample outputs (cached with each shard) and set metrics.

``features`` turns a chunk of decoded samples of pairs ``batch.indices`` into the 2048 Inception features (FID)
and the per-pair outputs PSNR, SSIM, SSIM_256 and LPIPS against each pair's ground-truth target. ``score``
computes from those alone the FID against the TRAIN images' statistics and the mean of each per-pair metric,
so ``condbench score`` re-scores from the cache.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..metrics.frechet import FrechetToReference
from ..metrics.paired_image import PROTOCOL, LPIPSAlex, reconstruction_metrics
from ..metrics.pidm_fid import PidmInception, ReferenceStatistics, pose_fid

PAIRED_METRICS = ("psnr", "ssim", "ssim_256", "lpips")  # the columns of the per-sample outputs, in this order


class PoseEvaluator:
    """FID (PIDM) and per-pair PSNR / SSIM / SSIM_256 / LPIPS of generated person images against their targets."""

    def __init__(self, targets: Callable[[Sequence[int]], torch.Tensor], inception: PidmInception,
                 reference: Optional[ReferenceStatistics], lpips: Optional[LPIPSAlex]):
        self.targets = targets  # pair indices -> their ground-truth images (N, 3, 256, 256) uint8
        self.inception = inception  # None (with reference None): FID left out, features (N, 0)
        self.reference = reference
        self.lpips = lpips  # None: LPIPS left out (its column holds NaN and no score is reported)
        self._fast: Optional[FrechetToReference] = None

    @torch.no_grad()
    def features(self, images01: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 3, H, W) in [0, 1] of the pairs ``batch.indices`` -> Inception features (N, 2048) and the
        per-pair outputs (N, 4): psnr, ssim, ssim_256, lpips (NaN when LPIPS is off)."""
        indices = list(batch.indices)
        if len(indices) != len(images01):
            raise ValueError(f"{len(images01)} images for {len(indices)} pairs")
        target = self.targets(indices)  # (N, 3, 256, 256) uint8
        paired = reconstruction_metrics(images01, target)
        lpips = self.lpips(images01, target) if self.lpips is not None else np.full(len(indices), np.nan)
        outputs = np.stack([paired["psnr"], paired["ssim"], paired["ssim_256"], lpips], axis=1)  # (N, 4)
        features = self.inception.features(images01) if self.inception is not None else np.empty((len(indices), 0))
        return torch.from_numpy(features), torch.from_numpy(outputs)

    def _means(self, outputs) -> dict[str, float]:
        outputs = np.asarray(torch.as_tensor(outputs).cpu(), dtype=np.float64)  # (N, 4), from any device
        names = PAIRED_METRICS if self.lpips is not None else PAIRED_METRICS[:3]
        return {name: float(outputs[:, PAIRED_METRICS.index(name)].mean()) for name in names}

    def score(self, features, outputs, labels) -> dict[str, float]:
        """FID (scipy sqrtm) vs the train statistics, and the mean of every per-pair metric."""
        if self.inception is None:
            return self._means(outputs)
        return {"fid": pose_fid(np.asarray(features, dtype=np.float64), self.reference), **self._means(outputs)}

    @property
    def bootstrap_device(self) -> torch.device:
        """Where :meth:`bootstrap_score` computes (Inception's device): a paired bootstrap resamples the data there."""
        return self.inception.device if self.inception is not None else torch.device("cpu")

    def bootstrap_score(self, features, outputs, labels) -> dict[str, float]:
        """As :meth:`score` with FID through one symmetric eigen-decomposition (equal to float64 rounding), in
        float64 on the Inception network's device."""
        if self.inception is None:
            return self._means(outputs)
        if self._fast is None:
            self._fast = FrechetToReference(self.reference.mu, self.reference.sigma, self.inception.device)
        features = torch.as_tensor(features).to(self._fast.device, torch.float64)  # (N, 2048)
        return {"fid": self._fast.distance(features), **self._means(outputs)}

    def protocol(self) -> dict:
        return {"fid": self.inception.protocol() if self.inception is not None else "off",
                "reference_count": self.reference.count if self.reference is not None else None,
                "paired": {k: PROTOCOL[k] for k in ("images", "psnr", "ssim", "ssim_256")},
                "lpips": self.lpips.protocol() if self.lpips is not None else "off"}

    def protocol_line(self) -> str:
        """How every number was computed, in one line for each result record."""
        parts = ["PIDM pose-guided protocol (utils/metrics.py)"]
        if self.inception is not None:
            p = self.inception.protocol()
            parts.append(f"FID on torchvision Inception-v3 pool features ({p['weights']}, sha256 "
                         f"{p['weights_sha256'][:16]}), images cv2-resized to 176x256, vs the statistics of "
                         f"{self.reference.count} TRAIN images, scipy sqrtm")
        else:
            parts.append("FID off")
        parts += ["SSIM (win 51, data_range 1), SSIM_256 (gaussian sigma 1.2, data_range of the prediction) and PSNR "
                 "(data_range 1) on the 256x256 images as stored"]
        if self.lpips is not None:
            parts.append(f"LPIPS AlexNet v0.1 on 176x256 in [-1, 1] (backbone sha256 {self.lpips.backbone_sha256[:16]})")
        else:
            parts.append("LPIPS off")
        parts.append("samples quantised to uint8; every pair is used (PIDM drops the last partial batch of 64); "
                     "paired-bootstrap intervals use the eigenvalue form of FID and the per-pair means")
        return "; ".join(parts)
