"""ADM batch files: the reference batch ``VIRTUAL_imagenet256_labeled.npz`` and sample batches for the TF evaluator.

An ADM batch is an npz whose ``arr_0`` holds uint8 NHWC images; a reference batch adds the Inception statistics
``mu``/``sigma`` (pool_3, 2048) and ``mu_s``/``sigma_s`` (sFID, 2023). Images are streamed from and to the zip
member, so a 10,000-image reference or a 50,000-sample batch never sits in memory whole. The reference images'
pool_3 features (for Precision/Recall) are computed once and kept in a shard cache beside it
(``reference_features/``; :mod:`condbench.cache`: checksum, finite rows, a damaged file moved aside and computed
again), keyed by the npz's SHA-256 and the Inception weights' SHA-256.
"""
from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np
import torch

from ..cache import ShardCache, cache_key, content_problem
from ..checkpoints import file_sha256, require_file
from ..hub import cache_root
from ..storage import atomic_path, temporary_name
from .inception import POOL_DIM, SFID_DIM
from .weight_files import REFERENCE_BATCH

if TYPE_CHECKING:
    from .inception import InceptionFeatures

STATISTICS = {"mu": (POOL_DIM,), "sigma": (POOL_DIM, POOL_DIM), "mu_s": (SFID_DIM,), "sigma_s": (SFID_DIM, SFID_DIM)}


class ReferenceBatchError(ValueError):
    """A reference batch that cannot be used; the message names the file, what is wrong and the remedy."""


def _remedy(path: Path) -> str:
    return (f"delete {path} and download it again from {REFERENCE_BATCH.url} (or the reference batch of your dataset), "
            f"or pass another file with the task option reference_batch")


def _read_header(handle) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the .npy stream ``handle`` (left at the first data byte)."""
    version = np.lib.format.read_magic(handle)
    reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = reader(handle)
    if fortran_order:
        raise ValueError("arr_0 is stored in Fortran order")
    return shape, dtype


def iter_batch_images(path: str | Path, batch_size: int = 256) -> Iterator[np.ndarray]:
    """The uint8 NHWC images of an ADM batch file, ``batch_size`` at a time, read straight from the zip."""
    with zipfile.ZipFile(path) as archive, archive.open("arr_0.npy") as handle:
        shape, dtype = _read_header(handle)
        per_image = int(np.prod(shape[1:])) * dtype.itemsize
        for start in range(0, shape[0], batch_size):
            count = min(batch_size, shape[0] - start)
            data = handle.read(count * per_image)
            if len(data) != count * per_image:
                raise ReferenceBatchError(f"{path}: arr_0 ends after {start} + {len(data) // per_image} of "
                                          f"{shape[0]} images (truncated file)")
            yield np.frombuffer(bytearray(data), dtype=dtype).reshape(count, *shape[1:])  # writable copy


class BatchNpzWriter:
    """Writes an ADM batch file image by image: ``arr_0`` uint8 NHWC plus optional extra arrays.

    Images go to a temporary file first (the .npy header needs the final count); :meth:`close` assembles
    the npz under a temporary name and renames it, so a reader never sees half a file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._raw = open(temporary_name(self.path.with_name(self.path.name + ".images")), "wb")  # cleaned if orphaned
        self._count = 0
        self._image_shape: Optional[tuple[int, ...]] = None

    def append(self, images: torch.Tensor) -> None:
        """Add uint8 images (N, 3, H, W)."""
        nhwc = images.detach().to("cpu", torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3)
        if self._image_shape is None:
            self._image_shape = nhwc.shape[1:]
        elif nhwc.shape[1:] != self._image_shape:
            raise ValueError(f"image size changed from {self._image_shape} to {nhwc.shape[1:]}")
        self._raw.write(nhwc.tobytes())
        self._count += len(nhwc)

    def close(self, **arrays: np.ndarray) -> Path:
        """Finish the file, adding ``arrays`` (e.g. mu, sigma) beside arr_0; returns its path."""
        self._raw.close()
        raw_path = Path(self._raw.name)
        try:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": (self._count, *(self._image_shape or (0, 0, 3)))}
            with atomic_path(self.path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                with archive.open("arr_0.npy", "w", force_zip64=True) as member, open(raw_path, "rb") as raw:
                    np.lib.format.write_array_header_1_0(member, header)
                    while block := raw.read(1 << 24):
                        member.write(block)
                for name, array in arrays.items():
                    with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, np.asarray(array))
        finally:
            raw_path.unlink(missing_ok=True)
        return self.path


@dataclass
class ReferenceBatch:
    """A validated reference batch: Inception statistics and a handle on its images."""

    path: Path
    mu: np.ndarray  # (2048,)
    sigma: np.ndarray  # (2048, 2048)
    mu_s: np.ndarray  # (2023,)
    sigma_s: np.ndarray  # (2023, 2023)
    num_images: int
    image_shape: tuple[int, ...]  # (H, W, 3)

    @classmethod
    def load(cls, path: str | Path) -> "ReferenceBatch":
        """Open and check ``path``; a truncated, corrupt or incomplete file raises :class:`ReferenceBatchError`."""
        path = require_file(path, "ADM reference batch", _remedy(Path(path)))
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as error:
            raise ReferenceBatchError(f"{path} is not a readable npz ({error}); the download is probably truncated "
                                      f"or corrupt. How to fix: {_remedy(path)}.") from None
        with archive:
            members = set(archive.namelist())
            missing = [k for k in ("arr_0", *STATISTICS) if f"{k}.npy" not in members]
            if missing:
                raise ReferenceBatchError(f"{path} lacks {', '.join(missing)} (has {sorted(members)}); an ADM reference "
                                          f"batch holds arr_0, mu, sigma, mu_s, sigma_s. How to fix: {_remedy(path)}.")
            stats = {}
            try:
                for key in STATISTICS:
                    with archive.open(f"{key}.npy") as handle:
                        stats[key] = np.lib.format.read_array(handle)
                with archive.open("arr_0.npy") as handle:
                    image_shape, dtype = _read_header(handle)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise ReferenceBatchError(f"{path} is damaged ({error.__class__.__name__}: {error}). "
                                          f"How to fix: {_remedy(path)}.") from None
        for key, shape in STATISTICS.items():
            _check_statistic(path, key, stats[key], shape)
        if dtype != np.uint8 or len(image_shape) != 4 or image_shape[-1] != 3 or image_shape[0] < 2:
            raise ReferenceBatchError(f"{path}: arr_0 must be uint8 images (N >= 2, H, W, 3), got {dtype} "
                                      f"{image_shape}. How to fix: {_remedy(path)}.")
        return cls(path, stats["mu"], stats["sigma"], stats["mu_s"], stats["sigma_s"], image_shape[0],
                   tuple(image_shape[1:]))

    @cached_property
    def sha256(self) -> str:
        return file_sha256(self.path)

    def pool_cache(self, cache_dir: Optional[str | Path] = None) -> ShardCache:
        """The shard cache that keeps reference pool_3 features: ``cache_dir``, else ``reference_features/`` beside
        the batch (as the sidecar file was before), else, where that folder cannot be written, the download cache's."""
        if cache_dir is not None:
            return ShardCache(cache_dir)
        writable = os.access(self.path.parent, os.W_OK)
        return ShardCache((self.path.parent if writable else cache_root()) / "reference_features")

    def pool_key(self, weights_sha256: str) -> str:
        """The cache key of the images' pool_3 features under the given Inception weights."""
        return cache_key(kind="ADM reference pool_3 features", batch_sha256=self.sha256, weights_sha256=weights_sha256)

    def _pool_problem(self, arrays: dict[str, np.ndarray]) -> Optional[str]:
        """What is wrong with cached pool_3 features, or None: they must be (num_images, 2048) and finite."""
        problem = content_problem(arrays, {"features": self.num_images}, finite=("features",))
        if problem is None and arrays["features"].shape[1:] != (POOL_DIM,):
            return f"its 'features' have shape {arrays['features'].shape}, expected {(self.num_images, POOL_DIM)}"
        return problem

    def pool_features(self, extractor: "InceptionFeatures", batch_size: int = 64,
                      cache_dir: Optional[str | Path] = None) -> np.ndarray:
        """pool_3 features (N, 2048) float32 of the reference images: from the cache (checked, a damaged file moved
        aside), else computed from the streamed images and stored."""
        found = self.pool_cache(cache_dir).get(self.pool_key(extractor.weights_sha256), self._pool_problem)
        if found is not None:
            return found["features"]
        pool = [extractor(torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)).pool.cpu().numpy()
                for batch in iter_batch_images(self.path, batch_size)]
        features = np.concatenate(pool).astype(np.float32)  # (N, 2048)
        self.store_pool_features(features, extractor.weights_sha256, cache_dir)
        return features

    def store_pool_features(self, features: np.ndarray, weights_sha256: str,
                            cache_dir: Optional[str | Path] = None) -> None:
        """Cache the features (used when they are already at hand)."""
        if features.shape != (self.num_images, POOL_DIM):
            raise ValueError(f"expected features of shape {(self.num_images, POOL_DIM)}, got {features.shape}")
        self.pool_cache(cache_dir).put(self.pool_key(weights_sha256), {"features": features.astype(np.float32)})


def _check_statistic(path: Path, key: str, value: np.ndarray, shape: tuple[int, ...]) -> None:
    if value.shape != shape or not np.issubdtype(value.dtype, np.floating):
        raise ReferenceBatchError(f"{path}: {key} must be a float array of shape {shape}, got {value.dtype} "
                                  f"{value.shape}. How to fix: {_remedy(path)}.")
    if not np.isfinite(value).all():
        raise ReferenceBatchError(f"{path}: {key} contains NaN or infinity. How to fix: {_remedy(path)}.")
