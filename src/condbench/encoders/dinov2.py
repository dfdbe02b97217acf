"""DINOv2 feature extractors as X-MDPT uses them (``infer_xmdpt.py``, ``my_dataset.FashionDataset``).

X-MDPT conditions on ``get_intermediate_layers(x, 1, return_class_token=True)`` of the torch-hub models
(facebookresearch/dinov2): the last block's tokens after the final LayerNorm, CLS first -> (N, 257, C) for a
224-px input. ViT-B/14 (C=768) sees the pose skeleton in [0, 1]; ViT-g/14 (C=1536, SwiGLU FFN) sees the source
image in [-1, 1]; both resized from 256 to 224 px with bicubic interpolation and no antialias, and no ImageNet
mean/std. The network here is transformers' ``Dinov2Model`` (whose ``last_hidden_state`` is that quantity) with
the hub models' position-embedding interpolation: the 37x37 table of a 518-px model is resized with
``scale_factor = (16 + 0.1) / 37`` (``interpolate_offset`` 0.1, bicubic, antialias off), where transformers asks
for ``size=(16, 16)``; the two sample the table at positions up to ~0.2 of a cell apart (the difference this
makes on features is measured in ``tests/test_dinov2_parity.py``).

Weights are the official ``dinov2_vit{b,g}14_pretrain.pth`` files, converted by :func:`convert_official_state_dict`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import CheckpointMismatchError, load_state_dict, load_strict
from ..hub import WeightSource, resolve_weights
from ..metrics.weight_files import DINOV2_VITB14_WEIGHTS, DINOV2_VITG14_WEIGHTS

DINOV2_INPUT_SIZE = 224  # X-MDPT's transforms.Resize(224)


@dataclass(frozen=True)
class DINOv2Spec:
    """One hub model: its size, FFN kind, and its published weights."""

    name: str
    hidden_size: int
    depth: int
    num_heads: int
    swiglu: bool
    weights: WeightSource
    image_size: int = 518  # the hub models are built for 518 px (37x37 position table)
    patch_size: int = 14


DINOV2_VITB14 = DINOv2Spec("dinov2_vitb14", 768, 12, 12, False, DINOV2_VITB14_WEIGHTS)
DINOV2_VITG14 = DINOv2Spec("dinov2_vitg14", 1536, 40, 24, True, DINOV2_VITG14_WEIGHTS)


def dinov2_config(spec: DINOv2Spec):
    """The transformers ``Dinov2Config`` of a hub model (layer scale, LayerNorm eps 1e-6, erf GELU, qkv bias)."""
    from transformers import Dinov2Config

    return Dinov2Config(hidden_size=spec.hidden_size, num_hidden_layers=spec.depth, num_attention_heads=spec.num_heads,
                        mlp_ratio=4, image_size=spec.image_size, patch_size=spec.patch_size, layerscale_value=1.0,
                        use_swiglu_ffn=spec.swiglu, layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu")


def hub_interpolated_pos_embed(table: torch.Tensor, rows: int, cols: int, offset: float = 0.1) -> torch.Tensor:
    """The torch-hub DINOv2 position table for a rows x cols patch grid: (1, 1 + M*M, D) -> (1, 1 + rows*cols, D).

    As ``DinoVisionTransformer.interpolate_pos_encoding``: float32, bicubic with scale factors
    ((rows + offset) / M, (cols + offset) / M), no antialias; the CLS entry is kept as is.
    """
    dtype, table = table.dtype, table.float()
    m = int(math.sqrt(table.shape[1] - 1))
    if m * m + 1 != table.shape[1]:
        raise ValueError(f"position table of {table.shape[1]} entries is not CLS + a square grid")
    if rows == m and cols == m:
        return table.to(dtype)
    grid = table[:, 1:].reshape(1, m, m, -1).permute(0, 3, 1, 2)  # (1, D, M, M)
    resized = F.interpolate(grid, scale_factor=((rows + offset) / m, (cols + offset) / m), mode="bicubic",
                            antialias=False)  # (1, D, rows, cols)
    if resized.shape[-2:] != (rows, cols):
        raise ValueError(f"interpolating a {m}x{m} table gave {tuple(resized.shape[-2:])}, not {(rows, cols)}")
    return torch.cat([table[:, :1], resized.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1).to(dtype)


def hub_dinov2_model(spec: DINOv2Spec) -> nn.Module:
    """transformers' ``Dinov2Model`` for ``spec`` whose embeddings interpolate positions as the hub models do."""
    from transformers import Dinov2Model
    from transformers.models.dinov2.modeling_dinov2 import Dinov2Embeddings

    class HubInterpolatedEmbeddings(Dinov2Embeddings):
        def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
            rows, cols = height // self.patch_size, width // self.patch_size
            return hub_interpolated_pos_embed(self.position_embeddings, rows, cols).to(embeddings.dtype)

    model = Dinov2Model(dinov2_config(spec))
    embeddings = HubInterpolatedEmbeddings(model.config)
    embeddings.load_state_dict(model.embeddings.state_dict())
    model.embeddings = embeddings
    return model.eval()


def _attention_projections(attention: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear, nn.Linear]:
    """(query, key, value, output) linears of a transformers Dinov2 attention (v5 and v4 layouts)."""
    if hasattr(attention, "q_proj"):
        return attention.q_proj, attention.k_proj, attention.v_proj, attention.o_proj
    return attention.attention.query, attention.attention.key, attention.attention.value, attention.output.dense


def convert_official_state_dict(state: dict[str, torch.Tensor], model: nn.Module,
                                source: str = "state dict") -> dict[str, torch.Tensor]:
    """An official ``dinov2_vit*14_pretrain.pth`` state dict -> ``model``'s (a :func:`hub_dinov2_model`) keys.

    The fused ``attn.qkv`` is split into query, key and value; a SwiGLU ``mlp.w12`` into gate (first half, the
    SiLU input) and up projections. Every official key must be used, else the error names those left over.
    """
    names = {id(module): name for name, module in model.named_modules()}
    out, used = {}, set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointMismatchError(f"{source} is not an official DINOv2 state dict: it has no {key!r}")
        used.add(key)
        return state[key]

    def put(module: nn.Module, param: str, tensor: torch.Tensor) -> None:
        out[f"{names[id(module)]}.{param}"] = tensor

    def linear(module: nn.Module, key: str) -> None:
        put(module, "weight", take(f"{key}.weight"))
        put(module, "bias", take(f"{key}.bias"))

    emb = model.embeddings
    put(emb, "cls_token", take("cls_token"))
    put(emb, "position_embeddings", take("pos_embed"))
    if emb.mask_token is not None:
        put(emb, "mask_token", take("mask_token"))
    linear(emb.patch_embeddings.projection, "patch_embed.proj")
    for i, layer in enumerate(model.encoder.layer):
        block = f"blocks.{i}"
        linear(layer.norm1, f"{block}.norm1")
        linear(layer.norm2, f"{block}.norm2")
        q, k, v, o = _attention_projections(layer.attention)
        for module, w, b in zip((q, k, v), take(f"{block}.attn.qkv.weight").chunk(3), take(f"{block}.attn.qkv.bias").chunk(3)):
            put(module, "weight", w)
            put(module, "bias", b)
        linear(o, f"{block}.attn.proj")
        put(layer.layer_scale1, "lambda1", take(f"{block}.ls1.gamma"))
        put(layer.layer_scale2, "lambda1", take(f"{block}.ls2.gamma"))
        mlp = layer.mlp
        if hasattr(mlp, "fc1"):
            linear(mlp.fc1, f"{block}.mlp.fc1")
            linear(mlp.fc2, f"{block}.mlp.fc2")
        elif hasattr(mlp, "gate_proj"):  # transformers >= 5: separate gate and up projections
            for module, w, b in zip((mlp.gate_proj, mlp.up_proj), take(f"{block}.mlp.w12.weight").chunk(2),
                                    take(f"{block}.mlp.w12.bias").chunk(2)):
                put(module, "weight", w)
                put(module, "bias", b)
            linear(mlp.down_proj, f"{block}.mlp.w3")
        else:  # transformers 4: the fused ``weights_in`` is w12
            linear(mlp.weights_in, f"{block}.mlp.w12")
            linear(mlp.weights_out, f"{block}.mlp.w3")
    linear(model.layernorm, "norm")
    left = sorted(set(state) - used)
    if left:
        raise CheckpointMismatchError(f"{source} does not fit a {len(model.encoder.layer)}-block DINOv2 "
                                      f"(is it another size?): unused keys {', '.join(left[:8])}"
                                      + (f" ... ({len(left)} in all)" if len(left) > 8 else ""))
    return out


def load_dinov2(spec: DINOv2Spec, ckpt: Optional[str | Path] = None) -> nn.Module:
    """The hub model ``spec`` from its official file (``ckpt``, the cache, or a one-time download)."""
    path = resolve_weights(spec.weights, ckpt, what=f"DINOv2 {spec.name} weights", option=f"{spec.name}=PATH")
    model = hub_dinov2_model(spec)
    state = convert_official_state_dict(load_state_dict(path), model, str(path))
    load_strict(model, state, str(path))
    return model


def dinov2_input(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 3, H, W) -> (N, 3, 224, 224): X-MDPT's tensor ``Resize(224, BICUBIC)`` (torchvision 0.13, no
    antialias), values kept as given."""
    return F.interpolate(images, size=(DINOV2_INPUT_SIZE, DINOV2_INPUT_SIZE), mode="bicubic", align_corners=False,
                         antialias=False)


@torch.no_grad()
def dinov2_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """CLS + patch tokens after the final norm for images already at 224 px: (N, 3, 224, 224) -> (N, 257, C)."""
    weight = model.embeddings.patch_embeddings.projection.weight
    return model(pixel_values=images.to(weight.device, weight.dtype)).last_hidden_state.float()


class XMDPTEncoders:
    """The two DINOv2 models of X-MDPT; called on (sources, skeletons), each (N, 3, 256, 256) in [0, 1], it
    returns ``{"pose_features": (N, 257, 768), "source_features": (N, 257, 1536)}``."""

    def __init__(self, pose_model: nn.Module, source_model: nn.Module):
        self.pose_model, self.source_model = pose_model, source_model

    @classmethod
    def load(cls, pose_ckpt: Optional[str | Path] = None, source_ckpt: Optional[str | Path] = None,
             device: str | torch.device = "cpu") -> "XMDPTEncoders":
        """ViT-B/14 (pose) and ViT-g/14 (source) from their official files."""
        return cls(load_dinov2(DINOV2_VITB14, pose_ckpt).to(device), load_dinov2(DINOV2_VITG14, source_ckpt).to(device))

    def __call__(self, sources: torch.Tensor, skeletons: torch.Tensor) -> dict[str, torch.Tensor]:
        for name, images in (("sources", sources), ("skeletons", skeletons)):
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"{name} must be images (N, 3, H, W) in [0, 1], got shape {tuple(images.shape)}")
        return {"pose_features": dinov2_features(self.pose_model, dinov2_input(skeletons)),  # pose in [0, 1]
                "source_features": dinov2_features(self.source_model, dinov2_input(sources * 2 - 1))}  # [-1, 1]
