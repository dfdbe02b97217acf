"""The released ImageNet models: which network, which sampler, which file, and where it is published.

Each :class:`ReleasedModel` turns into a registry entry whose factory resolves the checkpoint (``ckpt`` or a
one-time download into the cache), builds the network at the official size (or the sizes in
``model_config``, for tests and smaller variants), loads the file strictly, and wraps it in the model's own
sampler with its published defaults (any of which a caller may override).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from ..hub import WeightSource, resolve_weights
from .base import Adapter
from .loading import load_network
from .vae import SDVAEDecoder

DIT_EMBEDDERS = ("t_embedder.", "y_embedder.")


@dataclass(frozen=True)
class ReleasedModel:
    """One published checkpoint and how condbench runs it."""

    name: str
    network: Callable[[dict], nn.Module]  # model_config overrides -> the network at the official size
    adapter: Callable[..., Adapter]  # (network, name, checkpoint=..., decoder=..., **sampler) -> adapter
    weights: WeightSource
    c_dim: int
    sampler: str  # one line for ``condbench list models``
    sampler_defaults: dict = field(default_factory=dict)
    state_keys: tuple[str, ...] = ()  # sub-dicts of the file to look in (``ema``, ``model``)
    ignore_prefixes: tuple[str, ...] = ()  # training-only weights in the file
    embedder_prefixes: tuple[str, ...] = DIT_EMBEDDERS
    decoder: Callable[[], Callable] = SDVAEDecoder
    steps_key: str = "num_steps"

    def resolve(self, ckpt: Optional[str] = None) -> Path:
        """The local checkpoint: ``ckpt``, the cached copy, or a one-time download."""
        return resolve_weights(self.weights, ckpt, what=f"{self.name} checkpoint")

    def load(self, ckpt: Optional[str] = None, device: str = "cpu", model_config: Optional[dict] = None,
             embedders_only: bool = False, decoder: Optional[Any] = None, **sampler: Any) -> Adapter:
        """The adapter for this release; ``embedders_only`` reads only the parts that form c (for analysis)."""
        path = self.resolve(ckpt)
        network, info = load_network(lambda: self.network(dict(model_config or {})), path, state_keys=self.state_keys,
                                     ignore_prefixes=self.ignore_prefixes, embedder_prefixes=self.embedder_prefixes,
                                     embedders_only=embedders_only)
        if isinstance(decoder, str):
            decoder = SDVAEDecoder(decoder)
        adapter = self.adapter(network, self.name, checkpoint=info, decoder=decoder or self.decoder(),
                               **{**self.sampler_defaults, **sampler})
        return adapter.to(device)


def _dit_network(input_size: int) -> Callable[[dict], nn.Module]:
    def build(overrides: dict) -> nn.Module:
        from .dit_model import DIT_SIZES, DiT, DiTConfig

        return DiT(DiTConfig(**{"input_size": input_size, **DIT_SIZES["XL"], **overrides}))

    return build


def _dit_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .dit import DiTAdapter

    return DiTAdapter(network, name, **options)


def _mdt_network(overrides: dict) -> nn.Module:
    from .mdt_model import MDT, MDT_XL_2

    return MDT(dataclasses.replace(MDT_XL_2, **overrides))


def _mdt_adapter(network: nn.Module, name: str, **options: Any) -> Adapter:
    from .mdt import MDTAdapter

    return MDTAdapter(network, name, **options)


DIT_SAMPLER = "DDPM 250 respaced steps, learned sigma, CFG 1.5 on ch[:3]"

RELEASES: list[ReleasedModel] = [
    ReleasedModel("dit-xl-2", _dit_network(32), _dit_adapter,
                  WeightSource("DiT-XL-2-256x256.pt", "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-256x256.pt"),
                  1152, DIT_SAMPLER, dict(num_steps=250, cfg_scale=1.5, cfg_channels=3)),
    ReleasedModel("dit-xl-2-512", _dit_network(64), _dit_adapter,
                  WeightSource("DiT-XL-2-512x512.pt", "https://dl.fbaipublicfiles.com/DiT/models/DiT-XL-2-512x512.pt"),
                  1152, DIT_SAMPLER, dict(num_steps=250, cfg_scale=1.5, cfg_channels=3)),
    # MDTv2 (sail-sg/MDT): raw state dict; the side block and mask token only serve masked training
    ReleasedModel("mdt-xl-2", _mdt_network, _mdt_adapter,
                  WeightSource("mdt_xl2_v2_ckpt.pt", "https://huggingface.co/shgao/MDT-XL2/resolve/main/mdt_xl2_v2_ckpt.pt",
                               hf_repo="shgao/MDT-XL2"),
                  1152, "DDPM 250 respaced steps, learned sigma, CFG 3.8 power-cosine (pow 4) on ch[:3]",
                  dict(num_steps=250, cfg_scale=3.8, scale_pow=4.0, cfg_channels=3),
                  ignore_prefixes=("sideblocks.", "mask_token")),
]
