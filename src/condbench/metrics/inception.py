"""The ADM evaluator's Inception network in PyTorch: torch-fidelity's ``inception-v3-compat`` extractor.

torch-fidelity ports the 2015-12-05 TensorFlow Inception graph the ADM evaluator uses (TF1 bilinear resize
to 299, (x - 128) / 128, TF pooling quirks). :class:`InceptionFeatures` runs it on uint8 images and returns
the three outputs the protocol needs: pool3 (FID, Precision/Recall), the unbiased logits (IS) and the sFID
features (``mixed_6/conv`` = ``Mixed_6d.branch1x1``, first 7 channels, flattened like TF's NHWC).

The weights are the real ``weights-inception-2015-12-05-6726825d.pth``; without them it refuses to run.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ..checkpoints import CheckpointMismatchError, file_sha256
from .weight_files import INCEPTION_WEIGHTS, inception_weights_path
EXTRACTOR_NAME = "inception-v3-compat"
POOL_DIM, LOGIT_DIM = 2048, 1008
SFID_CHANNELS, SFID_GRID = 7, 17
SFID_DIM = SFID_GRID * SFID_GRID * SFID_CHANNELS  # 2023


@dataclass
class InceptionOutputs:
    """Per-image features of one batch, float32 on the network's device."""

    pool: torch.Tensor  # (N, 2048) pool_3
    spatial: torch.Tensor  # (N, 2023) mixed_6/conv[..., :7], flattened (h, w, c)
    logits: torch.Tensor  # (N, 1008) pool_3 @ W^T, no bias


class InceptionFeatures(nn.Module):
    """torch-fidelity's FeatureExtractorInceptionV3 with a hook for the sFID map; built by :meth:`load`."""

    def __init__(self, network: nn.Module, weights_name: str, weights_sha256: str):
        super().__init__()
        self.network = network
        self.weights_name = weights_name
        self.weights_sha256 = weights_sha256

    @classmethod
    def load(cls, path: Optional[str | Path] = None, *, download: bool = False,
             device: str | torch.device = "cpu") -> "InceptionFeatures":
        """The real weights: ``path``, else ``$CONDBENCH_INCEPTION_WEIGHTS``, else the cache; refuses when absent.

        ``download=True`` fetches the file once into the cache instead of refusing.
        """
        resolved = inception_weights_path(path, download)
        try:
            state_dict = torch.load(resolved, map_location="cpu", weights_only=True)
            extractor = cls._build(state_dict, resolved.name, file_sha256(resolved))
        except (RuntimeError, ValueError, OSError) as error:  # unpicklable, or not torch-fidelity's layout
            raise CheckpointMismatchError(
                f"{resolved} is not torch-fidelity's {INCEPTION_WEIGHTS.filename} ({str(error).splitlines()[0]}). "
                f"Download it again from {INCEPTION_WEIGHTS.url}.") from None
        return extractor.to(device)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> "InceptionFeatures":
        """TESTS AND BENCHMARKS ONLY: the network with the given (e.g. random) weights, named as such."""
        digest = hashlib.sha256()
        for key in sorted(state_dict):
            digest.update(key.encode())
            digest.update(state_dict[key].detach().cpu().contiguous().numpy().tobytes())
        return cls._build(state_dict, "state-dict (not the published weights)", digest.hexdigest())

    @classmethod
    def _build(cls, state_dict: dict[str, torch.Tensor], name: str, sha256: str) -> "InceptionFeatures":
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        buffer = io.BytesIO()  # torch-fidelity loads from a path or file object; hand it the tensors in memory
        torch.save(state_dict, buffer)
        buffer.seek(0)
        network = FeatureExtractorInceptionV3(EXTRACTOR_NAME, ["2048", "logits_unbiased"],
                                              feature_extractor_weights_path=buffer)
        return cls(network, name, sha256)

    @property
    def device(self) -> torch.device:
        return self.network.fc.weight.device

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> InceptionOutputs:
        """Features of uint8 images (N, 3, H, W) in [0, 255], any H, W (resized to 299 inside, like TF)."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        captured: list[torch.Tensor] = []
        handle = self.network.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, out: captured.append(out))
        try:
            pool, logits = self.network(images.to(self.device))  # (N, 2048), (N, 1008)
        finally:
            handle.remove()
        grid = captured[0][:, :SFID_CHANNELS]  # (N, 7, 17, 17)
        spatial = grid.permute(0, 2, 3, 1).reshape(len(grid), -1)  # (N, 17*17*7), TF NHWC order
        return InceptionOutputs(pool.float(), spatial.float(), logits.float())

    def protocol(self) -> dict:
        """What the features are, for every result that uses them."""
        return {
            "network": f"torch-fidelity {EXTRACTOR_NAME} (Inception 2015-12-05, the ADM evaluator's graph)",
            "weights": self.weights_name, "weights_sha256": self.weights_sha256,
            "input": "uint8 RGB at native size; TF1-compatible bilinear resize to 299; (x - 128) / 128",
            "fid_features": "pool_3 (2048)",
            "sfid_features": "mixed_6/conv = Mixed_6d.branch1x1 output, channels [:7] of 17x17, "
                             "flattened (h, w, c) like TF NHWC (2023)",
            "is_logits": "pool_3 @ fc.weight^T without bias (1008 classes)",
        }


def random_state_dict(seed: int = 0, logit_scale: float = 6.0) -> dict[str, torch.Tensor]:
    """TESTS AND BENCHMARKS ONLY: random weights in torch-fidelity's layout that keep activations O(1).

    He-normal convolutions with near-identity batch norms (so 40 layers neither vanish nor explode) and a
    classifier whose logits have a standard deviation of about ``logit_scale``.
    """
    from torchvision.models import inception_v3  # same module names and shapes as torch-fidelity's port

    template = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=LOGIT_DIM).state_dict()
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in template.items():
        shape = value.shape
        if key.endswith("num_batches_tracked"):
            tensor = torch.zeros_like(value)
        elif key.endswith("conv.weight"):
            tensor = torch.randn(shape, generator=gen) * (2.0 / shape[1:].numel()) ** 0.5
        elif key.endswith("bn.weight") or key.endswith("bn.running_var"):
            tensor = 0.8 + 0.4 * torch.rand(shape, generator=gen)
        elif key.endswith("bn.bias") or key.endswith("bn.running_mean"):
            tensor = 0.05 * torch.randn(shape, generator=gen)
        elif key == "fc.weight":
            tensor = torch.randn(shape, generator=gen) * logit_scale / POOL_DIM ** 0.5
        elif key == "fc.bias":
            tensor = 0.1 * torch.randn(shape, generator=gen)
        else:
            raise KeyError(f"unexpected Inception parameter {key}")
        out[key] = tensor.to(value.dtype)
    return out


def quantize_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 like DiT's sampler: clamp(127.5 x + 128) truncated, x = 2 y - 1, is
    floor(255 y + 0.5) (round half up)."""
    if not images.is_floating_point():
        raise ValueError(f"expected float images in [0, 1], got {images.dtype}")
    return torch.floor(images.float() * 255 + 0.5).clamp(0, 255).to(torch.uint8)


def as_uint8_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) as given; float images in [0, 1] quantised like DiT's sampler (round half up)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    return quantize_uint8(images)
