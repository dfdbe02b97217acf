"""How a denoiser's arithmetic runs: the ``precision`` and ``compile`` settings of a suite.

- ``fp32`` (default): float32 everywhere, PyTorch's defaults; bit-exact with the official float32 code.
- ``tf32``: float32 tensors, with the TF32 matmul and cuDNN flags on while the denoiser runs (what DiT's own
  ``sample_ddp.py`` does on a GPU). TF32 exists only on NVIDIA GPUs: on the CPU it equals ``fp32``.
- ``bf16``: the denoiser's layers under bfloat16 autocast. c (timestep and condition embeddings and the policy
  that rewrites it) is formed outside autocast, in float32 (see :func:`outside_autocast`), and the network's
  output is returned as float32, so policy masks and the sampler's arithmetic stay float32.

``compile`` wraps the network in ``torch.compile`` (built on first call). Both settings change the numbers a
sampler produces, so a non-default value enters the adapter's description, hence every cache key.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator

import torch
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


@contextlib.contextmanager
def tf32_enabled() -> Iterator[None]:
    """TF32 matrix products and convolutions on CUDA while inside; the previous flags are restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def precision_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a denoiser call runs in for ``precision`` on ``device``."""
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "tf32":
        return tf32_enabled()
    return contextlib.nullcontext()


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type``; nothing for devices without autocast (``meta``, used to count FLOPs)."""
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))  # torch < 2.5
    return torch.autocast(device_type=device_type, enabled=False) if available(device_type) else contextlib.nullcontext()


def outside_autocast(method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a network method that forms c (``method(self, t, ...)``, t a tensor) in float32 even under autocast, so
    c, and the policy hook that rewrites it, never see bfloat16; and eagerly under torch.compile, so the compiled
    graphs never trace the hook (a new one every step, which would recompile the network at every step)."""

    @torch.compiler.disable
    @functools.wraps(method)
    def run(self: nn.Module, t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with autocast_off(t.device.type):
            return method(self, t, *args, **kwargs)

    return run


class Denoiser:
    """A network called as the sampler calls it, in the chosen precision, eager or compiled; outputs are float32."""

    def __init__(self, network: nn.Module, precision: str = "fp32", compile: bool = False):
        self.network, self.precision, self.compile = network, check_precision(precision), compile
        self._compiled: Callable[..., torch.Tensor] | None = None

    def _callable(self) -> Callable[..., torch.Tensor]:
        if not self.compile:
            return self.network
        if self._compiled is None:
            self._compiled = torch.compile(self.network)
        return self._compiled

    def __call__(self, x: torch.Tensor, *inputs: Any) -> torch.Tensor:
        with precision_context(self.precision, x.device):
            out = self._callable()(x, *inputs)
        return out.float()

    def describe(self) -> dict:
        """The non-default settings (none for fp32 eager: caches made before these settings existed stay valid)."""
        return {**({"precision": self.precision} if self.precision != "fp32" else {}),
                **({"compile": True} if self.compile else {})}
