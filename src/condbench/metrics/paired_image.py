"""Paired image metrics of the pose-guided protocol (PIDM ``utils/metrics.py``, which X-MDPT cites): SSIM, SSIM_256,
PSNR and LPIPS between each generated image and its ground truth, one value per pair (the score is the mean;
per-pair values let the runner bootstrap intervals).

Images are compared as stored: uint8 RGB (N, 3, H, W), 256x256 for X-MDPT (float images in [0, 1] are first
quantised like saved PNGs). As in PIDM:

- PSNR: ``peak_signal_noise_ratio(gt, pred, data_range=1)`` on the images / 255 (float32), no resize.
- SSIM: ``structural_similarity(gt, pred, data_range=1, win_size=51)`` per channel, averaged, no resize.
- SSIM_256: the images x 255, ``gaussian_weights=True, sigma=1.2, use_sample_covariance=False`` (window 9) and
  ``data_range = pred.max() - pred.min()`` of the prediction.
- LPIPS: ``lpips.LPIPS(net='alex')`` (version 0.1) on both images resized to W176 x H256 with ``cv2.resize``
  (bilinear) on float32 pixels, then ``/127.5 - 1``.

PIDM pins scikit-image 0.17.2, which computes SSIM in float64 whatever the input, and NumPy 1.x, where the
float32 ``data_range`` of SSIM_256 met Python floats in float64; we hand scikit-image float64 arrays and a Python
float so any scikit-image >= 0.19 gives 0.17.2's arithmetic (newer ones would otherwise stay in float32).
PIDM's LPIPS drops the last partial batch of 64; here every pair counts (see :data:`PROTOCOL`).
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..checkpoints import CheckpointMismatchError, file_sha256
from ..hub import resolve_weights
from .inception import as_uint8_images
from .weight_files import ALEXNET_WEIGHTS

PROTOCOL_WIDTH, PROTOCOL_HEIGHT = 176, 256  # LPIPS and FID resize to W176 x H256 (DeepFashion's aspect)
SSIM_WINDOW = 51
SSIM_256_SIGMA = 1.2
PROTOCOL = {
    "reference": "PIDM utils/metrics.py (Reconstruction_Metrics.calculate_from_disk, LPIPS.calculate_from_disk)",
    "images": "uint8 RGB as stored; float images in [0, 1] quantised as floor(255 x + 0.5)",
    "psnr": "skimage peak_signal_noise_ratio(gt/255, pred/255, data_range=1), float32, no resize",
    "ssim": "skimage structural_similarity(gt/255, pred/255, data_range=1, win_size=51, channel_axis=-1), "
            "computed in float64 like scikit-image 0.17.2, no resize",
    "ssim_256": "structural_similarity(gt, pred (x255), gaussian_weights=True, sigma=1.2, use_sample_covariance=False, "
                "channel_axis=-1, data_range=pred.max() - pred.min()), float64, no resize",
    "lpips": "lpips.LPIPS(net='alex', version 0.1) on cv2.resize(float32 image, (176, 256)) / 127.5 - 1",
    "differences": "every pair is used (PIDM's LPIPS drops the last partial batch of 64)",
}


def as_hwc_uint8(images: torch.Tensor, name: str) -> np.ndarray:
    """(N, 3, H, W) uint8, or float in [0, 1] (quantised like a saved PNG) -> (N, H, W, 3) uint8."""
    try:
        images = as_uint8_images(images)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    return images.permute(0, 2, 3, 1).cpu().numpy()


def _paired(generated: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    generated, target = as_hwc_uint8(generated, "generated images"), as_hwc_uint8(target, "target images")
    if generated.shape != target.shape:
        raise ValueError(f"generated images {generated.shape} and targets {target.shape} differ in shape (N, H, W, 3)")
    return generated, target


def protocol_resize(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (256, 176, 3) float32 in [0, 255]: ``cv2.resize(image.astype(float32), (176, 256))``."""
    import cv2

    return cv2.resize(image.astype(np.float32), (PROTOCOL_WIDTH, PROTOCOL_HEIGHT))


def _psnr_ssim_pair(gt: np.ndarray, pred: np.ndarray, win_size: int) -> tuple[float, float]:
    """PSNR and SSIM of one pair of (H, W, 3) float32 images in [0, 1], as PIDM computes them."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    psnr = peak_signal_noise_ratio(gt, pred, data_range=1)
    ssim = structural_similarity(gt.astype(np.float64), pred.astype(np.float64), data_range=1, win_size=win_size,
                                 channel_axis=-1)
    return float(psnr), float(ssim)


def psnr_ssim(generated: torch.Tensor, target: torch.Tensor, win_size: int = SSIM_WINDOW) -> dict[str, np.ndarray]:
    """Per-pair ``psnr`` and ``ssim`` (each (N,) float64) with PIDM's definitions and an SSIM window of ``win_size``
    (odd, at most the image side: smaller images than PIDM's 256x256 need a smaller one)."""
    generated, target = _paired(generated, target)
    out = {name: np.empty(len(generated)) for name in ("psnr", "ssim")}
    for i, (pred_u8, gt_u8) in enumerate(zip(generated, target)):
        gt, pred = gt_u8.astype(np.float32) / 255.0, pred_u8.astype(np.float32) / 255.0  # (H, W, 3)
        out["psnr"][i], out["ssim"][i] = _psnr_ssim_pair(gt, pred, win_size)
    return out


def reconstruction_metrics(generated: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-pair ``psnr``, ``ssim`` and ``ssim_256`` (each (N,) float64) of generated vs target images."""
    from skimage.metrics import structural_similarity

    generated, target = _paired(generated, target)
    out = {name: np.empty(len(generated)) for name in ("psnr", "ssim", "ssim_256")}
    for i, (pred_u8, gt_u8) in enumerate(zip(generated, target)):
        gt, pred = gt_u8.astype(np.float32) / 255.0, pred_u8.astype(np.float32) / 255.0  # (H, W, 3)
        out["psnr"][i], out["ssim"][i] = _psnr_ssim_pair(gt, pred, SSIM_WINDOW)
        gt_256, pred_256 = gt * 255.0, pred * 255.0  # float32, as PIDM
        out["ssim_256"][i] = structural_similarity(
            gt_256.astype(np.float64), pred_256.astype(np.float64), gaussian_weights=True, sigma=SSIM_256_SIGMA,
            use_sample_covariance=False, channel_axis=-1, data_range=float(pred_256.max() - pred_256.min()))
    return out


class LPIPSAlex:
    """LPIPS (AlexNet, v0.1) as PIDM computes it, with torchvision's ImageNet AlexNet and lpips' own linear layers.

    Built by :meth:`load` from the real ``alexnet-owt-7be5be79.pth``; refuses to run without it.
    """

    def __init__(self, model: torch.nn.Module, backbone_name: str, backbone_sha256: str):
        self.model = model.eval()
        self.backbone_name = backbone_name
        self.backbone_sha256 = backbone_sha256

    @classmethod
    def load(cls, path: Optional[str | Path] = None, *, download: bool = True,
             device: str | torch.device = "cpu") -> "LPIPSAlex":
        """The backbone from ``path``, else the cache, else a one-time download (``download=False``: refuse)."""
        resolved = resolve_weights(ALEXNET_WEIGHTS, path, what="AlexNet weights for LPIPS",
                                   option="the LPIPS option alexnet_weights", download=download)
        digest = file_sha256(resolved)
        expected = ALEXNET_WEIGHTS.filename.rsplit("-", 1)[1].split(".")[0]  # torchvision names files by hash prefix
        if not digest.startswith(expected):
            raise CheckpointMismatchError(
                f"{resolved} is not torchvision's {ALEXNET_WEIGHTS.filename} (sha256 {digest[:8]}..., expected "
                f"{expected}...). Download it again from {ALEXNET_WEIGHTS.url}.")
        state = torch.load(resolved, map_location="cpu", weights_only=True)
        return cls._build(state, resolved.name, digest).to(device)

    @classmethod
    def from_backbone_state_dict(cls, state: dict[str, torch.Tensor]) -> "LPIPSAlex":
        """TESTS ONLY: LPIPS with the given (e.g. random) AlexNet weights, named as such."""
        digest = hashlib.sha256()
        for key in sorted(state):
            digest.update(key.encode())
            digest.update(state[key].detach().cpu().contiguous().numpy().tobytes())
        return cls._build(state, "state-dict (not the published weights)", digest.hexdigest())

    @classmethod
    def _build(cls, state: dict[str, torch.Tensor], name: str, sha256: str) -> "LPIPSAlex":
        import lpips

        with warnings.catch_warnings():  # lpips asks torchvision for an untrained AlexNet with a deprecated argument
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(net="alex", version="0.1", pretrained=False, pnet_rand=True, verbose=False)
        linear_path = Path(os.path.dirname(lpips.__file__)) / "weights" / "v0.1" / "alex.pth"
        linear = torch.load(linear_path, map_location="cpu", weights_only=True)
        expected = {f"lin{k}.model.1.weight" for k in range(5)}  # lpips.LPIPS itself loads with strict=False
        if set(linear) != expected:
            raise CheckpointMismatchError(f"{linear_path} (lpips' linear layers) holds {sorted(linear)}, expected "
                                          f"{sorted(expected)}: reinstall lpips")
        model.load_state_dict(linear, strict=False)  # the rest: the backbone (below) and fixed scaling buffers
        features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        backbone = {f"slice{s}.{key}": features.get(key) for s in range(1, 6)
                    for key in getattr(model.net, f"slice{s}").state_dict()}
        if (None in backbone.values() or len(backbone) != len(features)
                or not any(k.startswith("classifier.") for k in state)):
            raise CheckpointMismatchError(f"{name} is not torchvision's AlexNet state dict (features.* and "
                                          f"classifier.*); expected {ALEXNET_WEIGHTS.filename} from {ALEXNET_WEIGHTS.url}")
        try:
            model.net.load_state_dict(backbone, strict=True)
        except RuntimeError as error:
            raise CheckpointMismatchError(f"{name} does not fit AlexNet: {str(error).splitlines()[0]}") from None
        return cls(model, name, sha256)

    def to(self, device: str | torch.device) -> "LPIPSAlex":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.model.lin0.model[1].weight.device

    @torch.no_grad()
    def __call__(self, generated: torch.Tensor, target: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """Per-pair LPIPS distances (N,) float64 of generated vs target images (uint8 or float in [0, 1])."""
        generated, target = _paired(generated, target)
        out = []
        for start in range(0, len(generated), batch_size):
            batch = [self._inputs(images[start:start + batch_size]) for images in (generated, target)]
            out.append(self.model(batch[0], batch[1])[:, 0, 0, 0].double().cpu())  # (B,)
        return torch.cat(out).numpy() if out else np.empty(0)

    def _inputs(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, 3) uint8 -> (B, 3, 256, 176) float32 in [-1, 1], resized as PIDM does."""
        resized = np.stack([protocol_resize(image) / 127.5 - 1 for image in images])  # (B, 256, 176, 3)
        return torch.from_numpy(resized.transpose(0, 3, 1, 2)).float().to(self.device)

    def protocol(self) -> dict:
        return {"metric": "lpips", "definition": PROTOCOL["lpips"], "backbone": self.backbone_name,
                "backbone_sha256": self.backbone_sha256, "differences": PROTOCOL["differences"]}
