"""FID against a folder of reference images, with clean-fid's "clean" resize, on torch-fidelity's Inception.

clean-fid (GaParmar/clean-fid, ``cleanfid/resize.py``: ``build_resizer("clean")`` = ``make_resizer("PIL",
False, "bicubic", (299, 299))``) resizes each channel of the uint8 image, as a float32 PIL image (mode "F"),
to 299 x 299 with PIL's bicubic filter (antialiased: PIL widens the filter when it downsamples), clips it to
[0, 255] (clean-fid 0.1.35 as released on PyPI; an older GitHub snapshot, 1d8cba5, does not clip) and does NOT
quantise it again; its network then sees (x - 128) / 128 (``cleanfid/inception_torchscript.py``).
clean-fid's network is the StyleGAN2-ADA TorchScript export of the TF Inception 2015-12-05 graph; condbench
feeds the same float input to torch-fidelity's port of that graph (``inception-v3-compat``, the weights the
ImageNet task already resolves), entering at its first convolution so its own uint8 bilinear resize is
skipped. FID = the Frechet distance of pool_3 (2048) statistics (unbiased covariance, scipy sqrtm).

Reference images are center-cropped to a square and resized to the generation size (PIL bicubic on the uint8
RGB image, as an image saved at that size), then go through the same resize and network. Their statistics are
cached under a key of every file's content and of this protocol, with the shard cache's guarantees
(:mod:`condbench.cache`: checksum, finite values, a damaged file moved aside and computed again).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..cache import ShardCache, content_problem
from ..checkpoints import file_sha256
from ..datasets.image_folders import reference_files
from ..hub import cache_root
from .frechet import feature_statistics
from .inception import POOL_DIM, InceptionFeatures

INCEPTION_SIZE = 299


def clean_resize(images: torch.Tensor) -> torch.Tensor:
    """clean-fid's "clean" resize: uint8 (N, 3, H, W) -> float32 (N, 3, 299, 299), clipped to [0, 255], not
    re-quantised."""
    from PIL import Image

    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    out = np.empty((len(images), 3, INCEPTION_SIZE, INCEPTION_SIZE), dtype=np.float32)
    for i, image in enumerate(images.cpu().numpy()):
        for c in range(3):
            channel = Image.fromarray(image[c].astype(np.float32), mode="F")
            resized = np.asarray(channel.resize((INCEPTION_SIZE, INCEPTION_SIZE), resample=Image.BICUBIC))
            out[i, c] = resized.clip(0, 255)
    return torch.from_numpy(out)


@torch.no_grad()
def clean_pool_features(inception: InceptionFeatures, images: torch.Tensor, batch_size: int = 50) -> torch.Tensor:
    """pool_3 features (N, 2048) of uint8 images (N, 3, H, W) under clean-fid's resize."""
    network = inception.network
    feats = []
    for chunk in images.split(batch_size):
        resized = clean_resize(chunk)  # (n, 3, 299, 299) float32
        scaled = ((resized - 128) / 128).to(inception.device)
        # torch-fidelity's forward takes uint8 only and resizes bilinearly; its first convolution gets the
        # clean-resized float input instead (the uint8 stand-in below is never used)
        handle = network.Conv2d_1a_3x3.register_forward_pre_hook(lambda module, args: (scaled.to(args[0].dtype),))
        try:
            feats.append(inception(resized.round().clamp(0, 255).to(torch.uint8)).pool.cpu())
        finally:
            handle.remove()
    return torch.cat(feats)


def center_crop_resize(path: Path, size: int) -> torch.Tensor:
    """An image file -> RGB, center-cropped to a square, PIL-bicubic resized to ``size``: uint8 (3, size, size)."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        w, h = image.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


def protocol(size: int, inception: InceptionFeatures) -> dict:
    """Everything that determines the features, for cache keys and result records."""
    return {"resize": "clean-fid 0.1.35 'clean': per-channel float32 PIL bicubic to 299x299, clipped to [0, 255], "
                      "not re-quantised",
            "normalisation": "(x - 128) / 128",
            "network": f"torch-fidelity inception-v3-compat pool_3 (weights {inception.weights_name}, sha256 "
                       f"{inception.weights_sha256[:16]}), entered at Conv2d_1a_3x3",
            "reference_preprocessing": f"RGB, center crop to a square, PIL bicubic resize to {size}x{size}, uint8",
            "generated_preprocessing": "decoded images quantised to uint8 (round half up) at the generation size",
            "statistics": "mean and unbiased covariance; FID by scipy sqrtm"}


def reference_key(folder: Path, files: list[Path], size: int, inception: InceptionFeatures) -> str:
    """sha256 of the protocol and of every file's name and content: the cache key of a folder's statistics."""
    digest = hashlib.sha256(json.dumps(protocol(size, inception), sort_keys=True).encode())
    for f in files:
        digest.update(f"{f.relative_to(folder)}:{file_sha256(f)}\n".encode())
    return digest.hexdigest()


@dataclass
class FolderReference:
    """pool_3 statistics of a reference image folder under :func:`protocol`."""

    folder: Path
    count: int
    mu: np.ndarray
    sigma: np.ndarray
    key: str

    @classmethod
    def compute(cls, folder: str | Path, size: int, inception: InceptionFeatures, cache_dir: Optional[Path] = None,
                batch_size: int = 50, names: Optional[list[str]] = None) -> "FolderReference":
        """The statistics of the images ``names`` in ``folder`` (all its images if None), from the cache when there
        (the key covers every file, so their count is ``len(files)``)."""
        folder = Path(folder).expanduser()
        files = reference_files(folder, names)
        key = reference_key(folder, files, size, inception)
        cache = ShardCache(cache_dir or cache_root() / "fid_reference")
        found = cache.get(key, lambda arrays: content_problem(arrays, {"mu": POOL_DIM, "sigma": POOL_DIM},
                                                              finite=("mu", "sigma")))
        if found is not None:
            return cls(folder, len(files), found["mu"], found["sigma"], key)
        feats = []
        for start in range(0, len(files), batch_size):
            images = torch.stack([center_crop_resize(f, size) for f in files[start:start + batch_size]])
            feats.append(clean_pool_features(inception, images, batch_size).numpy())
        mu, sigma = feature_statistics(np.concatenate(feats))  # (2048,), (2048, 2048)
        cache.put(key, {"mu": mu, "sigma": sigma})
        return cls(folder, len(files), mu, sigma, key)
