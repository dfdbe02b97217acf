"""FID, sFID, IS and Precision/Recall under the ADM evaluator protocol (openai/guided-diffusion evaluations).

:class:`AdmAccumulator` streams batches of images through :class:`InceptionFeatures`, keeps the per-sample
features (so a paired bootstrap can resample them), optionally writes the samples as the ``arr_0`` npz the
TensorFlow evaluator reads, and :func:`adm_metrics` turns features into numbers against a reference batch:

- FID / sFID: Frechet distance of pool_3 / mixed_6 statistics to the reference's ``mu, sigma`` / ``mu_s, sigma_s``.
- IS: softmax of the unbiased logits, consecutive splits of 5,000 in sample order (a shorter tail is its own
  split, as in the evaluator's loop; fewer than 5,000 samples = one split).
- Precision/Recall (Kynkaanniemi et al.): k = 3 nearest neighbours, self excluded, pool_3 features, with the
  evaluator's float16 distance blocks by default (``distance="exact"``: float64 distances).
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
    """(mean, std, number of splits) of IS over consecutive ``split_size`` chunks, the last one possibly shorter;
    a tensor is scored on its own device."""
    logits = logits if isinstance(logits, torch.Tensor) else torch.as_tensor(np.asarray(logits))
    scores = [inception_score(logits[start:start + split_size])[0] for start in range(0, len(logits), split_size)]
    return float(np.mean(scores)), float(np.std(scores)), len(scores)


PR_DISTANCES = ("float16", "exact")
EVALUATOR_BLOCK = 10000  # the evaluator's row_batch_size and col_batch_size
PR_DISTANCE_PROTOCOL = {
    "float16": "squared distances in float16 blocks of 10,000 x 10,000, float32 where a block overflows "
               "(the evaluator's DistanceBlock)",
    "exact": "exact Euclidean distances in float64 (not the evaluator's arithmetic: P/R differ by up to ~1 point)",
}


def _rounded(x: torch.Tensor) -> torch.Tensor:
    """x rounded to float16 and back to float32 (one float16 operation's result)."""
    return x.half().float()


def _squared_distances(u: torch.Tensor, v: torch.Tensor, distance: str) -> torch.Tensor:
    """Squared Euclidean distances (R, C) of rows u (R, D) and v (C, D), as the evaluator's distance block.

    ``float16``: ``_batch_pairwise_distances`` on inputs cast to float16, ``max(|u|^2 - 2 u.v + |v|^2, 0)`` with
    each operation's result in float16 (sums and products accumulated in float32, as GPU kernels do), and the
    whole block recomputed in float32 if any entry is not finite; ``exact``: float64 from the difference.
    """
    if distance == "exact":
        return torch.cdist(u.double(), v.double()).square()
    u16, v16 = _rounded(u.float()), _rounded(v.float())
    norm_u = _rounded(_rounded(u16 * u16).sum(1))[:, None]  # (R, 1)
    norm_v = _rounded(_rounded(v16 * v16).sum(1))[None, :]  # (1, C)
    block = _rounded(_rounded(norm_u - _rounded(2 * _rounded(u16 @ v16.T))) + norm_v).clamp_min(0)  # (R, C)
    if bool(torch.isfinite(block).all()):
        return block
    u32, v32 = u.float(), v.float()
    return ((u32 * u32).sum(1)[:, None] - 2 * (u32 @ v32.T) + (v32 * v32).sum(1)[None, :]).clamp_min(0)


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _manifold_radii(features: torch.Tensor, k: int, distance: str, block: int) -> torch.Tensor:
    """Squared distance of every row to its k-th nearest row, itself (distance ~0) counted as the 0-th (N,)."""
    radii = []
    for rows in _blocks(len(features), block):
        nearest = None  # (R, k + 1) the smallest distances seen so far
        for cols in _blocks(len(features), block):
            d = _squared_distances(features[rows], features[cols], distance)
            d = d if nearest is None else torch.cat([nearest, d], dim=1)
            nearest = d.topk(min(k + 1, d.shape[1]), dim=1, largest=False).values
        radii.append(nearest.max(dim=1).values)  # the (k+1)-th smallest: topk holds k + 1 values
    return torch.cat(radii)


def _coverage(first: torch.Tensor, radii_first: torch.Tensor, second: torch.Tensor, radii_second: torch.Tensor,
              distance: str, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows of ``first`` inside some ball of ``second``, rows of ``second`` inside some ball of ``first``)."""
    first_in = torch.zeros(len(first), dtype=torch.bool, device=first.device)
    second_in = torch.zeros(len(second), dtype=torch.bool, device=second.device)
    for rows in _blocks(len(first), block):
        for cols in _blocks(len(second), block):
            d = _squared_distances(first[rows], second[cols], distance)  # (R, C)
            first_in[rows] |= (d <= radii_second[cols][None, :]).any(dim=1)
            second_in[cols] |= (d <= radii_first[rows][:, None]).any(dim=0)
    return first_in, second_in


def precision_recall(samples: np.ndarray, reference: np.ndarray, k: int = PR_NEIGHBOURS,
                     device: str | torch.device = "cpu", distance: str = "float16",
                     block: int = EVALUATOR_BLOCK) -> tuple[float, float]:
    """Improved precision (samples inside the reference manifold) and recall (reference inside the samples').

    Each manifold is the union of balls around its points with radius = distance to the k-th nearest other
    point. ``distance="float16"`` (default) computes distances as ADM's evaluator does (``ManifoldEstimator``
    with its ``DistanceBlock``: float16 blocks of 10,000 x 10,000, a block recomputed in float32 only where
    float16 overflows), which is what published numbers use; ``"exact"`` uses float64 Euclidean distances.
    """
    if distance not in PR_DISTANCES:
        raise ValueError(f"Precision/Recall distance must be one of {PR_DISTANCES}, got {distance!r}")
    gen = torch.as_tensor(np.asarray(samples), device=device)  # (N, D)
    ref = torch.as_tensor(np.asarray(reference), device=device)  # (M, D)
    if min(len(gen), len(ref)) <= k:
        raise ValueError(f"Precision/Recall with k={k} needs more than {k} samples and reference images, "
                         f"got {len(gen)} and {len(ref)}")
    ref_radii = _manifold_radii(ref, k, distance, block)
    gen_radii = _manifold_radii(gen, k, distance, block)
    ref_in, gen_in = _coverage(ref, ref_radii, gen, gen_radii, distance, block)
    return float(gen_in.double().mean()), float(ref_in.double().mean())


def adm_metrics(features: AdmFeatures, reference: ReferenceBatch, reference_pool: Optional[np.ndarray] = None,
                split_size: int = IS_SPLIT_SIZE, k: int = PR_NEIGHBOURS, device: str | torch.device = "cpu",
                pr_distance: str = "float16") -> dict[str, float]:
    """fid, sfid, inception_score (+ _std) and, when ``reference_pool`` is given, precision and recall."""
    mu, sigma = feature_statistics(features.pool)
    mu_s, sigma_s = feature_statistics(features.spatial)
    is_mean, is_std, _ = adm_inception_score(features.logits, split_size)
    out = {"fid": frechet_distance(mu, sigma, reference.mu, reference.sigma),
           "sfid": frechet_distance(mu_s, sigma_s, reference.mu_s, reference.sigma_s),
           "inception_score": is_mean, "inception_score_std": is_std}
    if reference_pool is not None:
        out["precision"], out["recall"] = precision_recall(features.pool, reference_pool, k, device, pr_distance)
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
                k: int = PR_NEIGHBOURS, device: str | torch.device = "cpu", pr_distance: str = "float16") -> dict:
        """The metrics against ``reference`` with a ``protocol`` dict saying exactly how they were computed."""
        self.close()
        features = self.features()
        reference_pool = reference.pool_features(self.extractor, self.batch_size) if precision_recall else None
        result: dict = adm_metrics(features, reference, reference_pool, split_size, k, device, pr_distance)
        n = len(features)
        result["protocol"] = {
            "protocol": "ADM evaluator (openai/guided-diffusion evaluations/evaluator.py), PyTorch port",
            **self.extractor.protocol(),
            "frechet": "scipy sqrtm, eps 1e-6 on the diagonals when not finite; sample statistics in float64",
            "is_split_size": split_size, "is_splits": -(-n // split_size), "is_shuffle": False,
            "pr_k": k if precision_recall else None,
            "pr_distance": PR_DISTANCE_PROTOCOL[pr_distance] if precision_recall else None,
            "sample_count": n, "reference": reference.path.name, "reference_count": reference.num_images,
            "sample_npz": str(self.npz_path) if self.npz_path is not None else None,
        }
        return result
