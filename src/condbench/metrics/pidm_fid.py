"""FID of the pose-guided protocol (PIDM ``utils/metrics.py`` ``class FID`` and ``utils/inception.py``).

Not the ADM/TF Inception: torchvision's ImageNet classifier ``inception_v3`` (``IMAGENET1K_V1``, file
``inception_v3_google-0cc3c7bd.pth``) up to its final average pool (2048 features). PIDM's input path, reproduced
operation for operation: ``cv2.resize(image.astype(float32), (176, 256))`` (W176 x H256, bilinear), ``/ 255``,
``F.upsample(size=(299, 299), mode='bilinear')`` (align_corners False), then per channel
``x * (std / 0.5) + (mean - 0.5) / 0.5`` with ImageNet mean/std. PIDM applies that last step to the [0, 1]
input itself (it is torchvision's ``transform_input``, meant for ImageNet-normalised input); we do the same,
since it defines the published numbers. The real set is the TRAIN images.

Differences from PIDM, recorded in :meth:`PidmInception.protocol`: every image is used (PIDM drops the last
partial batch of 64 in both sets), and the reference statistics are cached in condbench's cache under a key of
the folder's file names, sizes and mtimes and of this protocol (PIDM writes ``statistics.npz`` into the image
folder and reuses it even when the folder has changed).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ..cache import ShardCache, cache_key
from ..checkpoints import CheckpointMismatchError, file_sha256
from ..datasets.image_folders import pidm_image_files
from ..hub import cache_root, resolve_weights
from .frechet import feature_statistics, frechet_distance
from .paired_image import as_hwc_uint8, protocol_resize
from .weight_files import PIDM_INCEPTION_WEIGHTS as INCEPTION_WEIGHTS
FEATURE_DIM = 2048
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PIDM_BATCH = 64


class PidmInception:
    """torchvision's Inception-v3 on PIDM's input path; :meth:`features` gives the 2048-d pool features."""

    def __init__(self, network: torch.nn.Module, weights_name: str, weights_sha256: str):
        self.network = network.eval()
        self.weights_name = weights_name
        self.weights_sha256 = weights_sha256

    @classmethod
    def load(cls, path: Optional[str | Path] = None, *, download: bool = True,
             device: str | torch.device = "cpu") -> "PidmInception":
        """The weights from ``path``, else the cache, else a one-time download (``download=False``: refuse)."""
        resolved = resolve_weights(INCEPTION_WEIGHTS, path, what="Inception-v3 weights for the pose FID (PIDM protocol)",
                                   option="the FID option inception_weights", download=download)
        digest = file_sha256(resolved)
        expected = INCEPTION_WEIGHTS.filename.rsplit("-", 1)[1].split(".")[0]  # torchvision's hash-prefix naming
        if not digest.startswith(expected):
            raise CheckpointMismatchError(
                f"{resolved} is not torchvision's {INCEPTION_WEIGHTS.filename} (sha256 {digest[:8]}..., expected "
                f"{expected}...). Download it again from {INCEPTION_WEIGHTS.url}.")
        state = torch.load(resolved, map_location="cpu", weights_only=True)
        return cls._build(state, resolved.name, digest).to(device)

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> "PidmInception":
        """TESTS ONLY: the network with the given (e.g. random) weights, named as such."""
        return cls._build(state, "state-dict (not the published weights)", state_dict_sha256(state))

    @classmethod
    def _build(cls, state: dict[str, torch.Tensor], name: str, sha256: str) -> "PidmInception":
        from torchvision.models import inception_v3

        network = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise CheckpointMismatchError(f"{name} is not torchvision's Inception-v3 ImageNet state dict "
                                          f"({str(error).splitlines()[0]}); expected {INCEPTION_WEIGHTS.filename} "
                                          f"from {INCEPTION_WEIGHTS.url}") from None
        network.fc = torch.nn.Identity()  # the pool features (PIDM's block 3 output) instead of the logits
        return cls(network, name, sha256)

    def to(self, device: str | torch.device) -> "PidmInception":
        self.network.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.network.Conv2d_1a_3x3.conv.weight.device

    @torch.no_grad()
    def forward_unit(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features (B, 2048) float32 of float images (B, 3, H, W) in [0, 1] (after the protocol resize)."""
        x = torch.nn.functional.interpolate(images.to(self.device), size=(299, 299), mode="bilinear",
                                            align_corners=False)  # (B, 3, 299, 299)
        x = x.clone()
        for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
            x[:, c] = x[:, c] * (std / 0.5) + (mean - 0.5) / 0.5
        return self.network(x).float()  # (B, 2048): eval mode, no aux head, dropout off, fc = identity

    def features(self, images: torch.Tensor, batch_size: int = PIDM_BATCH) -> np.ndarray:
        """Features (N, 2048) float32 of uint8 images (N, 3, H, W) (float in [0, 1] is quantised first)."""
        hwc = as_hwc_uint8(images, "images for FID")
        out = [self.forward_unit(fid_inputs(hwc[start:start + batch_size])).cpu()
               for start in range(0, len(hwc), batch_size)]
        return torch.cat(out).numpy() if out else np.empty((0, FEATURE_DIM), np.float32)

    def protocol(self) -> dict:
        """What the features are, for every result that uses them (also part of the reference cache key)."""
        return {
            "metric": "fid (PIDM pose-guided protocol)",
            "network": "torchvision inception_v3 (IMAGENET1K_V1) to the final average pool, 2048 features",
            "weights": self.weights_name, "weights_sha256": self.weights_sha256,
            "input": "cv2.resize(float32 RGB, (176, 256)) bilinear, / 255, bilinear (align_corners False) to "
                     "299x299, then per channel x * (std / 0.5) + (mean - 0.5) / 0.5 (ImageNet mean/std) applied to "
                     "the [0, 1] input, as PIDM's InceptionV3.forward does",
            "reference": "the TRAIN images (PIDM: train_256x256_pngs): *.jpg and *.png of one folder, not recursive",
            "frechet": "condbench frechet_distance (scipy sqrtm, eps 1e-6 retry), float64 statistics, unbiased cov",
            "differences": "every image is used (PIDM drops the last partial batch of 64 in both sets); reference "
                           "statistics cached under a key of the folder's names, sizes and mtimes and this protocol "
                           "(PIDM reuses statistics.npz written into the image folder)",
        }


def fid_inputs(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, 256, 176) float32 in [0, 1]: PIDM's resize then ``/= 255``."""
    resized = np.stack([protocol_resize(image) for image in images]).transpose(0, 3, 1, 2)  # (B, 3, 256, 176)
    resized /= 255
    return torch.from_numpy(np.ascontiguousarray(resized))


def state_dict_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(state):
        digest.update(key.encode())
        digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def random_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """TESTS ONLY: random weights in torchvision's ``inception_v3`` layout (with the auxiliary head and 1000 classes).

    The feature layers come from :func:`condbench.metrics.inception.random_state_dict` (activations stay O(1));
    the heads, unused for features, get small random values.
    """
    from torchvision.models import inception_v3

    from .inception import random_state_dict as random_feature_layers

    template = inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    base = random_feature_layers(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    out = {}
    for key, value in template.items():
        if key in base and base[key].shape == value.shape:
            out[key] = base[key]
        elif key.endswith("num_batches_tracked"):
            out[key] = torch.zeros_like(value)
        elif key.endswith("running_var"):
            out[key] = torch.ones_like(value)
        else:
            out[key] = 0.01 * torch.randn(value.shape, generator=gen)
    return out


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 of an RGB image file; other modes are an error naming the file."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode != "RGB":
            raise ValueError(f"{path} is a {image.mode} image; the FID protocol reads RGB images")
        return np.array(image)


def _batches(files: list[Path], batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(files), batch_size):
        yield np.stack([read_rgb(p) for p in files[start:start + batch_size]])  # (B, H, W, 3)


@dataclass
class ReferenceStatistics:
    mu: np.ndarray  # (2048,) float64
    sigma: np.ndarray  # (2048, 2048) float64, unbiased
    count: int
    key: str  # cache key: folder contents + protocol


def reference_statistics(folder: str | Path, extractor: PidmInception, batch_size: int = PIDM_BATCH,
                         cache_dir: Optional[str | Path] = None) -> ReferenceStatistics:
    """Mean and covariance of the features of every image in ``folder``, cached by content and protocol.

    The cache (``cache_dir``, default ``<condbench cache>/fid_reference``) is keyed by each file's name, size and
    mtime and by :meth:`PidmInception.protocol`, so a changed folder or other weights never reuse old numbers.
    Features are reduced batch by batch (float64 sums around the first batch's mean), so the 48k training
    images need no more memory than one batch.
    """
    files = pidm_image_files(folder)
    listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = cache_key(kind="pidm-fid-reference", files=listing, protocol=extractor.protocol())
    store = ShardCache(cache_dir if cache_dir is not None else cache_root() / "fid_reference")
    cached = store.get(key)
    if cached is not None:
        return ReferenceStatistics(cached["mu"], cached["sigma"], int(cached["count"]), key)
    shift = total = outer = None
    count = 0
    for images in _batches(files, batch_size):
        features = extractor.forward_unit(fid_inputs(images)).double().cpu().numpy()  # (B, 2048)
        if shift is None:
            shift = features.mean(axis=0)
            total, outer = np.zeros_like(shift), np.zeros((len(shift), len(shift)))
        centred = features - shift
        total += centred.sum(axis=0)
        outer += centred.T @ centred
        count += len(features)
    mean_offset = total / count
    mu = shift + mean_offset
    sigma = (outer - count * np.outer(mean_offset, mean_offset)) / (count - 1)
    store.put(key, {"mu": mu, "sigma": sigma, "count": np.array(count)})
    return ReferenceStatistics(mu, sigma, count, key)


def pose_fid(features: np.ndarray, reference: ReferenceStatistics) -> float:
    """FID of generated-image features (N, 2048) to the reference statistics."""
    mu, sigma = feature_statistics(features)
    return frechet_distance(mu, sigma, reference.mu, reference.sigma)
