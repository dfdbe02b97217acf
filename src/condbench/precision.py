"""How a denoiser's arithmetic runs: the ``precision`` and ``compile`` settings of a suite.

- ``fp32`` (default): float32 everywhere, PyTorch's defaults; bit-exact with the official float32 code.
- ``tf32``: float32 tensors, with the TF32 matmul and cuDNN flags on while the denoiser runs (what DiT's own
  ``sample_ddp.py`` does on a GPU). TF32 exists only on NVIDIA GPUs: on the CPU it equals ``fp32``.
- ``bf16``: the denoiser's layers under bfloat16 autocast. c (timestep and condition embeddings and the policy
  that rewrites it) is formed outside autocast, in float32 (see :func:`outside_autocast`), and the network's
  output is returned as float32, so policy masks and the sampler's arithmetic stay float32.
- ``official``: what the release's own sampling script does, where condbench knows it (an adapter's
  ``official_precision``): DiT and MDT set TF32 (``tf32``); X-MDPT and MDSGen run their whole forward under CUDA
  bf16 autocast, c included (``bf16-c``: :func:`outside_autocast` then leaves autocast on). Other releases refuse it.

The TF32 flags are process-wide (not per thread): :meth:`Denoiser.process_flags` holds them for a whole block of
sampling and of the work on its samples, so decoding beside sampling (``condbench.overlap``) sees the same flags
as decoding after it.

``compile`` wraps the network in ``torch.compile`` (built on first call). Both settings change the numbers a
sampler produces, so a non-default value enters the adapter's description, hence every cache key.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

PRECISIONS = ("fp32", "tf32", "bf16", "official")  # the suite's choices
# the arithmetics they resolve to: bf16-c is bf16 autocast with c formed under it too (X-MDPT's, MDSGen's own)
ARITHMETICS = ("fp32", "tf32", "bf16", "bf16-c")

# set while a bf16-c network call runs: c is then formed under autocast, as the release's own forward forms it
_C_UNDER_AUTOCAST: contextvars.ContextVar[bool] = contextvars.ContextVar("condbench_c_under_autocast", default=False)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ValueError naming them."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def resolve_precision(precision: str, official: Optional[str], release: str) -> str:
    """The arithmetic (one of :data:`ARITHMETICS`) that ``precision`` means for ``release``, whose own sampling
    script runs in ``official`` (None: not known to condbench, so ``official`` is refused)."""
    if check_precision(precision) != "official":
        return precision
    if official is None:
        raise ValueError(f"{release}: precision 'official' is defined only for releases whose sampling script's "
                         "arithmetic condbench reproduces (DiT and MDT: float32 with TF32; X-MDPT and MDSGen: bf16 "
                         f"autocast, c included); for {release} choose fp32, tf32 or bf16")
    if official not in ARITHMETICS:
        raise ValueError(f"{release}: unknown official arithmetic {official!r}; one of {', '.join(ARITHMETICS)}")
    return official


@contextlib.contextmanager
def tf32_enabled() -> Iterator[None]:
    """TF32 matrix products and convolutions on CUDA while inside; the previous flags are restored after."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@contextlib.contextmanager
def autocast_with_c(device: torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` with c formed under it too (see :func:`outside_autocast`)."""
    token = _C_UNDER_AUTOCAST.set(True)
    try:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
            yield
    finally:
        _C_UNDER_AUTOCAST.reset(token)


def precision_context(arithmetic: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The context a denoiser call runs in for ``arithmetic`` (one of :data:`ARITHMETICS`) on ``device``."""
    if arithmetic == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if arithmetic == "bf16-c":
        return autocast_with_c(device)
    if arithmetic == "tf32":
        return tf32_enabled()
    return contextlib.nullcontext()


def autocast_off(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast disabled on ``device_type``; nothing for devices without autocast (``meta``, used to count FLOPs)."""
    available = getattr(torch.amp, "is_autocast_available", lambda kind: kind in ("cpu", "cuda"))  # torch < 2.5
    return torch.autocast(device_type=device_type, enabled=False) if available(device_type) else contextlib.nullcontext()


def outside_autocast(method: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Run a network method that forms c (``method(self, t, ...)``, t a tensor) in float32 even under autocast, so
    c, and the policy hook that rewrites it, never see bfloat16 (except under ``bf16-c``, whose releases form c
    under autocast); and eagerly under torch.compile, so the compiled graphs never trace the hook (a new one every
    step, which would recompile the network at every step)."""

    @torch.compiler.disable
    @functools.wraps(method)
    def run(self: nn.Module, t: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        with contextlib.nullcontext() if _C_UNDER_AUTOCAST.get() else autocast_off(t.device.type):
            return method(self, t, *args, **kwargs)

    return run


class Denoiser:
    """A network called as the sampler calls it, in the chosen precision, eager or compiled; outputs are float32.

    ``official`` is the arithmetic of the release's own sampling script (None: unknown, ``official`` refused);
    ``release`` names it in that refusal.
    """

    def __init__(self, network: nn.Module, precision: str = "fp32", compile: bool = False,
                 official: Optional[str] = None, release: str = "this model"):
        self.network, self.precision, self.compile = network, check_precision(precision), compile
        self.arithmetic = resolve_precision(precision, official, release)
        self._compiled: Callable[..., torch.Tensor] | None = None

    def _callable(self) -> Callable[..., torch.Tensor]:
        if not self.compile:
            return self.network
        if self._compiled is None:
            self._compiled = torch.compile(self.network)
        return self._compiled

    def __call__(self, x: torch.Tensor, *inputs: Any) -> torch.Tensor:
        with precision_context(self.arithmetic, x.device):
            out = self._callable()(x, *inputs)
        return out.float()

    def embedding_context(self, device: torch.device) -> contextlib.AbstractContextManager:
        """The context the parts of c are formed in outside a network call (the condition embedding, the analysis,
        the policies' references), so they equal what the network forms: autocast under ``bf16-c``, else none."""
        return autocast_with_c(device) if self.arithmetic == "bf16-c" else contextlib.nullcontext()

    def process_flags(self) -> contextlib.AbstractContextManager:
        """Process-wide flags for a whole block of sampling and of the work on its samples (decoding, features):
        TF32 under ``tf32``. They cannot be set per thread, so decoding beside the sampler (``condbench.overlap``)
        would otherwise see them or not depending on timing."""
        return tf32_enabled() if self.arithmetic == "tf32" else contextlib.nullcontext()

    def describe(self) -> dict:
        """The non-default settings (none for fp32 eager: caches made before these settings existed stay valid).
        ``official`` is recorded as the arithmetic it means, so it shares the cache with that arithmetic's runs."""
        return {**({"precision": self.arithmetic} if self.arithmetic != "fp32" else {}),
                **({"compile": True} if self.compile else {})}
