"""Build a network and load a released checkpoint into it: strictly, or only its embedders.

A file in the official layout of a masked-training family (MDT, X-MDPT, MDSGen) also carries the side
interpolator and mask token, which inference never builds: they are left out for every network of the family,
the released ones and the tiny ones shipped here alike (:func:`training_only_prefixes`).

Embedding analysis needs only the parts that form c (a few MB of a 3 GB DiT-XL/2): with ``embedders_only``
the network is built on the meta device, only the tensors under the embedder prefixes are read from the
file (key by key for safetensors, memory-mapped for torch files), and every other parameter stays meta.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..checkpoints import file_sha256, load_state_dict, load_strict
from .catalogue import MDSGEN_TRAINING_ONLY_PREFIXES, XMDPT_TRAINING_ONLY_PREFIXES


def load_network(build: Callable[[], nn.Module], path: str | Path, *, state_keys: tuple[str, ...] = (),
                 ignore_prefixes: tuple[str, ...] = (), embedder_prefixes: Optional[tuple[str, ...]] = None,
                 embedders_only: bool = False) -> tuple[nn.Module, dict]:
    """``build()`` a network and load ``path`` into it; returns it with the file's provenance.

    ``state_keys`` are sub-dicts to look in (``ema``, ``model``), first present wins; ``ignore_prefixes`` are
    training-only weights the file carries and inference does not use, besides those of the network's family.
    """
    path = Path(path)
    only = embedder_prefixes if embedders_only else None
    if embedders_only and not embedder_prefixes:
        raise ValueError("embedders_only needs the state-dict prefixes of the embedders")
    if only is not None:
        with torch.device("meta"):
            model = build()
    else:
        model = build()
    state = load_state_dict(path, key=state_keys or None, only_prefixes=only)
    ignored = tuple(ignore_prefixes) + training_only_prefixes(model)
    load_strict(model, state, source=str(path), ignore_prefixes=ignored, only_prefixes=only)
    info = {"path": str(path.resolve()), "sha256": file_sha256(path), "embedders_only": embedders_only}
    if state_keys:
        info["state_keys"] = list(state_keys)
    return model.eval(), info


def training_only_prefixes(network: nn.Module) -> tuple[str, ...]:
    """The state-dict prefixes an official file of ``network``'s family holds for masked training only (none for
    other networks)."""
    from .mdsgen_model import MDSGen
    from .mdt_model import MDT, MDT_TRAINING_ONLY_PREFIXES
    from .xmdpt_model import XMDPT

    families = ((XMDPT, XMDPT_TRAINING_ONLY_PREFIXES), (MDSGen, MDSGEN_TRAINING_ONLY_PREFIXES),
                (MDT, MDT_TRAINING_ONLY_PREFIXES))
    return next((prefixes for family, prefixes in families if isinstance(network, family)), ())


def materialized_device(model: nn.Module) -> torch.device:
    """The device of the network's real (non-meta) tensors."""
    for tensor in model.parameters():
        if not tensor.is_meta:
            return tensor.device
    raise ValueError(f"{type(model).__name__} has no loaded parameters")


def move_materialized(model: nn.Module, device: torch.device | str) -> None:
    """``model.to(device)`` that leaves meta tensors (parts never loaded) where they are."""
    if not any(p.is_meta for p in model.parameters()):
        model.to(device)
        return
    for module in model.modules():
        for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
            if tensor is not None and not tensor.is_meta:
                moved = tensor.to(device)
                if isinstance(tensor, nn.Parameter):
                    module._parameters[name] = nn.Parameter(moved, requires_grad=tensor.requires_grad)
                else:
                    module._buffers[name] = moved
