"""Tensors as the numpy arrays condbench stores (cache shards, grids, kept samples), exactly, in any dtype.

numpy has no bfloat16: ``tensor.numpy()`` refuses it (``TypeError: Got unsupported ScalarType BFloat16``), and
SD3.5 and FLUX sample in it. Half-width floats (bfloat16, float16) are widened to float32, which holds every one
of their values exactly; a kept sampler state also records its dtype, so a resumed trajectory continues from the
very tensor the baseline had (bit-identical to an uninterrupted one).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

HALF_WIDTH = (torch.bfloat16, torch.float16)
STATE_FIELD, DTYPE_FIELD = "x", "dtype"


def widened(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` in float32 if it is bfloat16 or float16 (exact), else unchanged."""
    return tensor.float() if tensor.dtype in HALF_WIDTH else tensor


def exact_numpy(tensor: torch.Tensor) -> np.ndarray:
    """The values of ``tensor`` (any device, any dtype) as a numpy array on the CPU, none of them rounded."""
    return widened(tensor.detach()).cpu().numpy()


def dtype_named(name: str) -> Optional[torch.dtype]:
    """The torch dtype a stored name stands for ("bfloat16" or "torch.bfloat16"), or None."""
    dtype = getattr(torch, name.removeprefix("torch."), None)
    return dtype if isinstance(dtype, torch.dtype) else None


def state_arrays(x: torch.Tensor) -> dict[str, np.ndarray]:
    """What the cache stores of a kept sampler state x (N, ...): its exact values and its dtype."""
    return {STATE_FIELD: exact_numpy(x), DTYPE_FIELD: np.array(str(x.dtype).removeprefix("torch."))}


def state_tensor(arrays: dict[str, np.ndarray]) -> torch.Tensor:
    """The sampler state (N, ...) that :func:`state_arrays` stored, in its own dtype again."""
    x = torch.from_numpy(np.ascontiguousarray(arrays[STATE_FIELD]))
    return x.to(dtype_named(str(arrays[DTYPE_FIELD]))) if DTYPE_FIELD in arrays else x
