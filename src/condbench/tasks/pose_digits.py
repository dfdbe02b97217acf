"""The built-in paired task ``pose-digits``: X-MDPT's continuous-condition path offline, on 8x8 digits.

Pair i is test digit i with a source digit of the same class and the target's ink mask as its "pose"
(:mod:`condbench.datasets.digit_pairs`). A tiny X-MDPT network (:data:`XMDPT_DIGITS_CONFIG`: pixel space, the
official block stack, the three condition heads) with X-MDPT's own sampler (DDIM 50, power-cosine guidance,
the zero vector as the null condition) generates the target; it ships in the package and is reproduced by
``condbench train pose-digits``. The condition "encoders" are :func:`condbench.encoders.patch_tokens.patch_tokens`
(no weights) and the source image itself as the source latent.

Metrics (per pair, against the target): PSNR and SSIM as PIDM defines them (``metrics/paired_image.py``) with the
SSIM window adapted to 8x8 images, class fidelity (the digits CNN's top-1 class vs the target's); per set: FID in
the digits CNN's feature space against the TRAIN split (named ``fid_digits_cnn``: not the paper's FID). LPIPS and
the Inception FID are left out by name: their weights cannot be had offline.
"""
from __future__ import annotations

from functools import cached_property
from typing import Optional, Sequence

import numpy as np
import torch

from ..adapters.xmdpt_model import XMDPTConfig
from ..encoders.patch_tokens import PATCH, patch_tokens, token_count
from .pose import PairBatch, PairedConditionsMixin
from .shipped import DIGITS_XMDPT

IMAGE_SIZE = 8
# The tiny X-MDPT of pose-digits: 16 tokens of 2x2 pixel patches, D = 64, learned sigma; condition widths are
# those of the patch-token encoder (2x2x1 = 4 per token, 1 + 16 tokens).
XMDPT_DIGITS_CONFIG = XMDPTConfig(input_size=IMAGE_SIZE, patch_size=2, in_channels=1,
                                  hidden_size=DIGITS_XMDPT.hidden_size, depth=4,
                                  num_heads=4, decode_layer=2, pose_dim=PATCH * PATCH, source_dim=PATCH * PATCH,
                                  feature_tokens=token_count(IMAGE_SIZE, IMAGE_SIZE))
XMDPT_DIGITS_SAMPLER = DIGITS_XMDPT.sampler  # X-MDPT's published sampler settings
ASSET_XMDPT = DIGITS_XMDPT.asset
SSIM_WINDOW_DIGITS = 3  # PIDM's 51 px is a fifth of 256; the nearest odd window on 8 px (1.6) that SSIM allows
PAIRED_METRICS = ("psnr", "ssim", "class_fidelity")  # the columns of the per-sample outputs, in this order
LEFT_OUT = {"lpips": "left out: its AlexNet weights cannot be had offline",
            "fid": "left out: the Inception-v3 weights of the PIDM FID cannot be had offline (and 8x8 images are not "
                   "its input); fid_digits_cnn is reported instead, which is not comparable to the paper's FID"}


def digit_conditions(source: torch.Tensor, pose: torch.Tensor) -> dict[str, torch.Tensor]:
    """X-MDPT's ``cond`` dict of N pairs from sources (N, 1, 8, 8) in [-1, 1] and poses (N, 1, 8, 8) in {0, 1}:
    patch tokens of each (N, 17, 4), and the source image as the source latent (pixel space, no VAE)."""
    return {"pose_features": patch_tokens(pose), "source_features": patch_tokens(source), "source_latent": source}


class PoseDigitsEvaluator:
    """Per-pair PSNR / SSIM / class fidelity of generated digits against their targets, and fid_digits_cnn."""

    def __init__(self, targets: torch.Tensor, labels: torch.Tensor, classifier_path: Optional[str] = None):
        from ..metrics.frechet import feature_statistics
        from ..datasets.digit_pairs import DigitPairs
        from .digits import load_classifier, run_classifier

        self.targets, self.labels = targets, labels  # (N, 1, 8, 8) in [-1, 1], (N,)
        self.classifier, self.classifier_info = load_classifier(classifier_path)
        train = DigitPairs("train")
        features, _ = run_classifier(self.classifier, train.images[train.members])  # (1438, 128)
        self.reference_count = len(train)
        self.real_mu, self.real_sigma = feature_statistics(features.numpy())
        self._fast = None

    @torch.no_grad()
    def features(self, images01: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, 1, 8, 8) in [0, 1] of pairs ``batch.indices`` -> CNN features (N, 128) and the per-pair
        outputs (N, 3): psnr, ssim, class fidelity (1 where the CNN reads the target's class)."""
        from ..metrics.paired_image import psnr_ssim
        from .digits import run_classifier

        indices = list(batch.indices)
        if len(indices) != len(images01):
            raise ValueError(f"{len(images01)} images for {len(indices)} pairs")
        targets01 = (self.targets[indices] + 1) / 2  # (N, 1, 8, 8) in [0, 1]
        rgb = [x.expand(-1, 3, -1, -1) for x in (images01.float(), targets01)]  # grey as RGB: the same PSNR and SSIM
        paired = psnr_ssim(*rgb, win_size=SSIM_WINDOW_DIGITS)
        features, logits = run_classifier(self.classifier, images01.float() * 2 - 1)  # (N, 128), (N, 10)
        fidelity = (logits.argmax(1) == self.labels[indices]).double().numpy()
        outputs = np.stack([paired["psnr"], paired["ssim"], fidelity], axis=1)  # (N, 3)
        return features, torch.from_numpy(outputs)

    def _means(self, outputs) -> dict[str, float]:
        outputs = np.asarray(outputs, dtype=np.float64)
        return {name: float(outputs[:, k].mean()) for k, name in enumerate(PAIRED_METRICS)}

    def score(self, features, outputs, labels) -> dict[str, float]:
        """fid_digits_cnn (scipy sqrtm) against the train split, and the mean of every per-pair metric."""
        from ..metrics.frechet import feature_statistics, frechet_distance

        mu, sigma = feature_statistics(np.asarray(features, dtype=np.float64))
        return {"fid_digits_cnn": frechet_distance(mu, sigma, self.real_mu, self.real_sigma), **self._means(outputs)}

    def bootstrap_score(self, features, outputs, labels) -> dict[str, float]:
        """As :meth:`score`, with the FID through one symmetric eigen-decomposition (equal to float64 rounding)."""
        from ..metrics.frechet import FrechetToReference

        if self._fast is None:
            self._fast = FrechetToReference(self.real_mu, self.real_sigma)
        return {"fid_digits_cnn": self._fast.distance(np.asarray(features, dtype=np.float64)), **self._means(outputs)}

    def protocol(self) -> dict:
        from ..metrics.paired_image import PROTOCOL

        return {"psnr": PROTOCOL["psnr"] + " (8x8 digits as RGB)",
                "ssim": PROTOCOL["ssim"].replace("win_size=51", f"win_size={SSIM_WINDOW_DIGITS}") + " (8x8 digits as RGB)",
                "class_fidelity": "digits CNN top-1 class of the sample == the target's class",
                "fid_digits_cnn": f"FID on the digits CNN's 128-d features vs the {self.reference_count} TRAIN digits "
                                  "(unbiased covariance, scipy sqrtm); not comparable to the paper's FID",
                "classifier": self.classifier_info, "left_out": dict(LEFT_OUT)}

    def protocol_line(self) -> str:
        return (f"pose-digits, PIDM's paired definitions on 8x8 digits: PSNR (data_range 1) and SSIM (win "
                f"{SSIM_WINDOW_DIGITS}, data_range 1) vs each pair's target; class fidelity (digits CNN); fid_digits_cnn "
                f"on the digits CNN's 128-d features vs {self.reference_count} TRAIN digits (not comparable to the "
                f"paper's FID); lpips {LEFT_OUT['lpips']}; Inception FID left out (no weights offline); samples "
                f"quantised to uint8; paired-bootstrap intervals use the eigenvalue form of the FID and the per-pair means")


class PoseDigitsTask(PairedConditionsMixin):
    """Pose-guided generation of 8x8 digits: every pair of the test split, conditions computed in memory.

    Options: ``num_pairs`` (the first N test pairs; None: all 359), ``seed`` (the source of each pair),
    ``classifier`` (another digits CNN file).
    """
    headline_metrics = ("fid_digits_cnn", "psnr", "ssim", "class_fidelity")  # the report's across-tasks columns

    name = "pose-digits"
    condition_kind = "pose"
    default_model = "xmdpt-digits"
    grid_count = 16  # pairs shown in the report's pair grid

    def __init__(self, num_pairs: Optional[int] = None, seed: int = 0, classifier: Optional[str] = None):
        from ..datasets.digit_pairs import DigitPairs

        if num_pairs is not None and num_pairs < 1:
            raise ValueError(f"num_pairs must be >= 1 (or None for every test pair), got {num_pairs}")
        self.dataset = DigitPairs("test", seed)
        if num_pairs is not None and num_pairs > len(self.dataset):
            raise ValueError(f"num_pairs {num_pairs}: the test split has {len(self.dataset)} pairs")
        self.num_pairs, self.seed, self.classifier_path = num_pairs, seed, classifier
        self._evaluator: Optional[PoseDigitsEvaluator] = None

    @property
    def num_samples(self) -> int:
        return self.num_pairs or len(self.dataset)

    @cached_property
    def pairs(self) -> dict[str, torch.Tensor]:
        """Source, pose, target (each (N, 1, 8, 8)) and label (N,) of every pair of the run."""
        return self.dataset.tensors(range(self.num_samples))

    @cached_property
    def _cond(self) -> dict[str, torch.Tensor]:
        return digit_conditions(self.pairs["source"], self.pairs["pose"])

    def pair_batch(self, indices: range) -> PairBatch:
        return PairBatch({k: v[indices.start:indices.stop] for k, v in self._cond.items()}, indices)

    def grid_context(self, count: int) -> dict[str, np.ndarray]:
        """Source, pose and target of the first ``count`` pairs ((count, 1, 8, 8) float32 in [0, 1]) for the
        report's pair grid."""
        return {"source": ((self.pairs["source"][:count] + 1) / 2).numpy(), "pose": self.pairs["pose"][:count].numpy(),
                "target": ((self.pairs["target"][:count] + 1) / 2).numpy()}

    def targets(self, indices: Sequence[int]) -> torch.Tensor:
        """Ground-truth targets (N, 1, 8, 8) in [0, 1] of pairs ``indices``."""
        return (self.pairs["target"][list(indices)] + 1) / 2

    @property
    def evaluator(self) -> PoseDigitsEvaluator:
        if self._evaluator is None:
            self._evaluator = PoseDigitsEvaluator(self.pairs["target"], self.pairs["label"], self.classifier_path)
        return self._evaluator

    def describe(self) -> dict:
        from ..datasets.digit_pairs import INK_THRESHOLD

        return {"task": self.name, "num_samples": self.num_samples, "seed": self.seed,
                "pairs": f"sklearn digits, test split of condbench.tasks.digits.classifier_split (seed 0); source: "
                         f"another test digit of the target's class chosen from (seed, index); pose: the target's "
                         f"ink mask (intensity >= {INK_THRESHOLD} of 16)",
                "conditions": "patch tokens (mean + 2x2 patches) of pose and source; source latent = source pixels",
                "metric_details": self.evaluator.protocol(), "metric_protocol": self.evaluator.protocol_line()}
