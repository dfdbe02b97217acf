"""FID, sFID, IS and Precision/Recall under the ADM evaluator protocol (openai/guided-diffusion evaluations).

:class:`AdmAccumulator` streams batches of images through :class:`InceptionFeatures`, keeps the per-sample
features (so a paired bootstrap can resample them), optionally writes the samples as the ``arr_0`` npz the
TensorFlow evaluator reads, and :func:`adm_metrics` turns features into numbers against a reference batch:

- FID / sFID: Frechet distance of pool_3 / mixed_6 statistics to the reference's ``mu, sigma`` / ``mu_s, sigma_s``.
- IS: softmax of the unbiased logits, consecutive splits of 5,000 in sample order (a shorter tail is its own
  split, as in the evaluator's loop; fewer than 5,000 samples = one split).
- Precision/Recall (Kynkaanniemi et al.): k = 3 nearest neighbours, self excluded, pool_3 features.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .classification import inception_score
from .frechet import feature_statistics, frechet_distance
from .inception import InceptionFeatures, as_uint8_images
from .reference_batch import BatchNpzWriter, ReferenceBatch

IS_SPLIT_SIZE = 5000
PR_NEIGHBOURS = 3
PR_BLOCK = 1000  # rows of a distance block: 1,000 x 50,000 float64 = 400 MB


@dataclass
class AdmFeatures:
    """Per-sample Inception features, float32 numpy, in sample order."""

    pool: np.ndarray  # (N, 2048)
    spatial: np.ndarray  # (N, 2023)
    logits: np.ndarray  # (N, 1008)

    def __len__(self) -> int:
        return len(self.pool)

    def subset(self, index: np.ndarray | torch.Tensor) -> "AdmFeatures":
        """The features of ``index`` (e.g. a bootstrap resample)."""
        index = np.asarray(index)
        return AdmFeatures(self.pool[index], self.spatial[index], self.logits[index])


def adm_inception_score(logits: np.ndarray | torch.Tensor, split_size: int = IS_SPLIT_SIZE) -> tuple[float, float, int]:
    """(mean, std, number of splits) of IS over consecutive ``split_size`` chunks, the last one possibly shorter."""
    logits = torch.as_tensor(np.asarray(logits))
    scores = [inception_score(logits[start:start + split_size])[0] for start in range(0, len(logits), split_size)]
    return float(np.mean(scores)), float(np.std(scores)), len(scores)


def _kth_neighbour_distance(features: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """Distance of every row to its k-th nearest other row (N,); the zero self-distance is position 0."""
    return torch.cat([torch.cdist(part, features).kthvalue(k + 1, dim=1).values for part in features.split(block)])


def _inside_any_ball(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, block: int) -> torch.Tensor:
    """Whether each point lies within radius of at least one centre (N,) bool."""
    return torch.cat([(torch.cdist(part, centres) <= radii[None, :]).any(dim=1) for part in points.split(block)])


def precision_recall(samples: np.ndarray, reference: np.ndarray, k: int = PR_NEIGHBOURS,
                     device: str | torch.device = "cpu", block: int = PR_BLOCK) -> tuple[float, float]:
    """Improved precision (samples inside the reference manifold) and recall (reference inside the samples').

    Each manifold is the union of balls around its points with radius = distance to the k-th nearest other
    point; distances are exact Euclidean in float64.
    """
    gen = torch.as_tensor(np.asarray(samples), dtype=torch.float64, device=device)  # (N, D)
    ref = torch.as_tensor(np.asarray(reference), dtype=torch.float64, device=device)  # (M, D)
    if min(len(gen), len(ref)) <= k:
        raise ValueError(f"Precision/Recall with k={k} needs more than {k} samples and reference images, "
                         f"got {len(gen)} and {len(ref)}")
    precision = _inside_any_ball(gen, ref, _kth_neighbour_distance(ref, k, block), block)
    recall = _inside_any_ball(ref, gen, _kth_neighbour_distance(gen, k, block), block)
    return float(precision.double().mean()), float(recall.double().mean())


def adm_metrics(features: AdmFeatures, reference: ReferenceBatch, reference_pool: Optional[np.ndarray] = None,
                split_size: int = IS_SPLIT_SIZE, k: int = PR_NEIGHBOURS,
                device: str | torch.device = "cpu") -> dict[str, float]:
    """fid, sfid, inception_score (+ _std) and, when ``reference_pool`` is given, precision and recall."""
    mu, sigma = feature_statistics(features.pool)
    mu_s, sigma_s = feature_statistics(features.spatial)
    is_mean, is_std, _ = adm_inception_score(features.logits, split_size)
    out = {"fid": frechet_distance(mu, sigma, reference.mu, reference.sigma),
           "sfid": frechet_distance(mu_s, sigma_s, reference.mu_s, reference.sigma_s),
           "inception_score": is_mean, "inception_score_std": is_std}
    if reference_pool is not None:
        out["precision"], out["recall"] = precision_recall(features.pool, reference_pool, k, device)
    return out


class AdmAccumulator:
    """Streams samples through Inception; :meth:`compute` scores them against a reference batch.

    ``npz_path``: also write the samples as the uint8 NHWC ``arr_0`` npz the ADM TensorFlow evaluator reads
    (finished by :meth:`close` or :meth:`compute`).
    """

    def __init__(self, extractor: InceptionFeatures, batch_size: int = 64, npz_path: Optional[str | Path] = None):
        self.extractor = extractor
        self.batch_size = batch_size
        self.npz_path = Path(npz_path) if npz_path is not None else None
        self._writer = BatchNpzWriter(npz_path) if npz_path is not None else None
        self._npz_finished = False
        self._parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, images: torch.Tensor) -> None:
        """Add images: uint8 (N, 3, H, W) in [0, 255], or float in [0, 1] (quantised like DiT's sampler)."""
        images = as_uint8_images(images)
        if self._npz_finished:
            raise RuntimeError("the samples npz is already finished (close/compute); start a new accumulator")
        if self._writer is not None:
            self._writer.append(images)
        for chunk in images.split(self.batch_size):
            out = self.extractor(chunk)
            self._parts.append((out.pool.cpu().numpy(), out.spatial.cpu().numpy(), out.logits.cpu().numpy()))

    def __len__(self) -> int:
        return sum(len(p[0]) for p in self._parts)

    def features(self) -> AdmFeatures:
        if not self._parts:
            raise ValueError("no images were added")
        return AdmFeatures(*(np.concatenate(arrays) for arrays in zip(*self._parts)))

    def close(self, as_reference: bool = False) -> Optional[Path]:
        """Finish the npz; ``as_reference`` adds mu/sigma/mu_s/sigma_s and the P/R sidecar (a new reference batch)."""
        if self._writer is None:
            if as_reference:
                raise ValueError("as_reference needs an accumulator created with npz_path")
            return None
        arrays = {}
        if as_reference:
            features = self.features()
            arrays = dict(zip(("mu", "sigma"), feature_statistics(features.pool)))
            arrays.update(zip(("mu_s", "sigma_s"), feature_statistics(features.spatial)))
        path = self._writer.close(**arrays)
        self._writer, self._npz_finished = None, True
        if as_reference:
            ReferenceBatch.load(path).store_pool_features(features.pool, self.extractor.weights_sha256)
        return path

    def compute(self, reference: ReferenceBatch, precision_recall: bool = True, split_size: int = IS_SPLIT_SIZE,
                k: int = PR_NEIGHBOURS, device: str | torch.device = "cpu") -> dict:
        """The metrics against ``reference`` with a ``protocol`` dict saying exactly how they were computed."""
        self.close()
        features = self.features()
        reference_pool = reference.pool_features(self.extractor, self.batch_size) if precision_recall else None
        result: dict = adm_metrics(features, reference, reference_pool, split_size, k, device)
        n = len(features)
        result["protocol"] = {
            "protocol": "ADM evaluator (openai/guided-diffusion evaluations/evaluator.py), PyTorch port",
            **self.extractor.protocol(),
            "frechet": "scipy sqrtm, eps 1e-6 on the diagonals when not finite; sample statistics in float64",
            "is_split_size": split_size, "is_splits": -(-n // split_size), "is_shuffle": False,
            "pr_k": k if precision_recall else None,
            "pr_distance": "exact Euclidean, float64 (the TF evaluator uses float16 squared distances when finite)",
            "sample_count": n, "reference": reference.path.name, "reference_count": reference.num_images,
            "sample_npz": str(self.npz_path) if self.npz_path is not None else None,
        }
        return result
