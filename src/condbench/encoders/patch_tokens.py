"""The parameter-free condition encoder of the built-in pose-digits task: an image's pixels as tokens.

It stands where X-MDPT's DINOv2 encoders stand (CLS + patch tokens): a mean token followed by the image's
non-overlapping ``patch`` x ``patch`` patches, each flattened, in row-major order. No weights, so nothing to
ship or download, and the same features for every model and policy.
"""
from __future__ import annotations

import torch

PATCH = 2


def patch_tokens(images: torch.Tensor, patch: int = PATCH) -> torch.Tensor:
    """Images (N, C, H, W) -> tokens (N, 1 + (H/p)(W/p), C p p): the mean of the patch tokens, then the patches."""
    n, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"images of {h}x{w} pixels do not split into {patch}x{patch} patches")
    patches = images.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)  # (N, h, w, C, p, p)
    tokens = patches.reshape(n, (h // patch) * (w // patch), c * patch * patch)  # (N, T, C p p)
    return torch.cat([tokens.mean(1, keepdim=True), tokens], dim=1)  # (N, 1 + T, C p p)


def token_count(height: int, width: int, patch: int = PATCH) -> int:
    """How many tokens :func:`patch_tokens` gives for an image of ``height`` x ``width``."""
    return 1 + (height // patch) * (width // patch)
