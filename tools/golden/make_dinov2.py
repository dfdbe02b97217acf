"""Golden fixtures for the DINOv2 encoders: the official facebookresearch/dinov2 ViT on tiny random weights.

Usage: PYTHONPATH=src python tools/golden/make_dinov2.py --official /path/to/dinov2 [--out tests/fixtures/dinov2]

Builds two tiny ``DinoVisionTransformer``s as ``dinov2/hub/backbones.py`` builds the hub models (img_size 518, so
a 224-px input interpolates the 37x37 position table; patch 14, layer scale, ``block_chunks=0``, no registers,
``MemEffAttention`` blocks, which fall back to plain attention without xformers): one with the MLP FFN (as
ViT-B/14) and one with ``swiglufused`` (as ViT-g/14). Every parameter, LayerNorms and layer scales included, is
re-drawn at random. Runs ``get_intermediate_layers(x, 1, return_class_token=True)`` on 224-px inputs and saves
``{mlp,swiglu}.weights.safetensors`` (official state dicts) and ``golden.safetensors`` (the fingerprint of the
inputs, two PairedNoise draws the test rebuilds, and the (N, 257, C) features, CLS first, as ``infer_xmdpt.py`` concatenates them). Nothing is stubbed.
"""
from __future__ import annotations

import sys
from functools import partial

import torch

from condbench.checkpoints import save_safetensors
from condbench.seeding import PairedNoise
from official import official_checkout  # tools/golden/, beside this script

TINY = dict(img_size=518, patch_size=14, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4, init_values=1.0,
            block_chunks=0, num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1)
IMAGE_SEED = 0


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter: LayerNorm weights around 1, layer scales around 0.5, the rest N(0, 0.1^2)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("gamma"):
                p.copy_(0.5 + 0.2 * noise)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name in ("pos_embed", "cls_token"):
                p.copy_(noise)  # a rough table makes the interpolation scheme matter
            else:
                p.copy_(0.1 * noise)


def main() -> None:
    args, commit = official_checkout(__doc__, "github.com/facebookresearch/dinov2", "tests/fixtures/dinov2")
    sys.path.insert(0, str(args.official))
    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.models.vision_transformer import DinoVisionTransformer

    torch.set_grad_enabled(False)
    images = PairedNoise(IMAGE_SEED, range(2)).draw((3, 224, 224))  # the test rebuilds them
    golden = {"images_sum": images.double().sum(), "images_corner": images[:, :, :2, :3].reshape(-1)}
    meta = {"repo": "github.com/facebookresearch/dinov2", "commit": commit, "config": TINY, "image_seed": IMAGE_SEED,
            "command": "PYTHONPATH=src python tools/golden/make_dinov2.py --official <dinov2 checkout>"}
    for seed, ffn in enumerate(("mlp", "swiglufused"), start=1):
        model = DinoVisionTransformer(**TINY, ffn_layer=ffn, block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention))
        randomize(model.eval(), seed)
        patches, cls = model.get_intermediate_layers(images, 1, return_class_token=True)[0]
        kind = "mlp" if ffn == "mlp" else "swiglu"
        golden[f"{kind}_features"] = torch.cat([cls.unsqueeze(1), patches], dim=1)  # (N, 257, C)
        save_safetensors(model.state_dict(), args.out / f"{kind}.weights.safetensors", {**meta, "ffn_layer": ffn})
    save_safetensors(golden, args.out / "golden.safetensors", meta)


if __name__ == "__main__":
    main()
