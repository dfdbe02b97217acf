"""Golden fixture for U-ViT's decoder: the official ``FrozenAutoencoderKL`` (baofff/U-ViT ``libs/autoencoder.py``).

Usage: python tools/golden/make_uvit_autoencoder.py --official PATH/TO/U-ViT [--commit SHA] [--out tests/fixtures/uvit]

Builds the official autoencoder at a tiny ``ddconfig`` (``get_model``'s options: double_z, no attention in
the up levels, so attention only in the middle block as in SD's KL-f8; ch 32, ch_mult (1, 2), one res block,
4 latent channels, scale_factor 0.18215) from a state dict in the official layout (``encoder.*``,
``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*``, what ``autoencoder_kl_ema.pth`` holds) with every
parameter drawn at random (norms included), which the official class loads itself and checks for missing
and unexpected keys. It then decodes a latent batch with ``FrozenAutoencoderKL.decode`` (what
``eval_ldm_discrete.py`` calls on the sampled latents) and maps it to [0, 1] with the official
``unpreprocess`` of ``ImageNet256Features`` (the huge model's dataset, ``datasets.py``).

The weights are not stored (about 2.6 MB with the encoder): ``autoencoder.io.safetensors`` holds the
key -> shape layout, the seed and the weights' sum (the test redraws them with
``tools/golden/seeded_weights.py``), the latents, the raw decode output and the [0, 1] images; its metadata
also records ``get_model``'s released ddconfig and the key -> shape layout of the full-size
``FrozenAutoencoderKL`` (built on the meta device), i.e. of ``autoencoder_kl_ema.pth``. The official
modules import only torch, numpy, einops, torchvision and PIL: nothing is stubbed.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from seeded_weights import seeded_state, weights_sum  # tools/golden/, beside this script

DDCONFIG = dict(double_z=True, z_channels=4, resolution=16, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 2],
                num_res_blocks=1, attn_resolutions=[], dropout=0.0)
EMBED_DIM, SCALE_FACTOR, SEED = 4, 0.18215, 7


def official_layout(autoencoder_module, ddconfig: dict, embed_dim: int) -> dict[str, list[int]]:
    """Key -> shape of ``FrozenAutoencoderKL(ddconfig, embed_dim, ...)``, built from its official parts the way
    its ``__init__`` builds them (the class itself needs a file to construct; it then verifies this layout)."""
    with torch.device("meta"):
        parts = {"encoder": autoencoder_module.Encoder(**ddconfig), "decoder": autoencoder_module.Decoder(**ddconfig),
                 "quant_conv": torch.nn.Conv2d(2 * ddconfig["z_channels"], 2 * embed_dim, 1),
                 "post_quant_conv": torch.nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)}
    return {f"{name}.{k}": list(v.shape) for name, part in parts.items() for k, v in part.state_dict().items()}


def released_config(autoencoder_module) -> tuple[dict, int, float]:
    """(ddconfig, embed_dim, scale_factor) with which ``get_model`` builds the autoencoder of
    ``autoencoder_kl_ema.pth``, read by calling it with the class swapped for a recorder (no file is read)."""
    real = autoencoder_module.FrozenAutoencoderKL
    autoencoder_module.FrozenAutoencoderKL = lambda ddconfig, embed_dim, path, scale_factor: (ddconfig, embed_dim,
                                                                                              scale_factor)
    try:
        return autoencoder_module.get_model("autoencoder_kl_ema.pth")
    finally:
        autoencoder_module.FrozenAutoencoderKL = real


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, type=Path, help="checkout of github.com/baofff/U-ViT")
    parser.add_argument("--commit", help="the official commit (default: git rev-parse HEAD in --official)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "uvit")
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    import datasets as official_datasets  # the official code
    import libs.autoencoder as official

    layout = official_layout(official, DDCONFIG, EMBED_DIM)
    released, released_embed_dim, released_scale = released_config(official)
    assert released_scale == SCALE_FACTOR and released_embed_dim == released["z_channels"] == EMBED_DIM
    state = seeded_state(layout, SEED)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "autoencoder_kl_ema.pth"
        torch.save(state, path)
        autoencoder = official.FrozenAutoencoderKL(DDCONFIG, EMBED_DIM, str(path), SCALE_FACTOR)
    gen = torch.Generator().manual_seed(SEED + 1)
    side = DDCONFIG["resolution"] // 2 ** (len(DDCONFIG["ch_mult"]) - 1)
    latents = torch.randn(3, DDCONFIG["z_channels"], side, side, generator=gen)  # what the sampler returns
    with torch.no_grad():
        decoded = autoencoder.decode(latents)  # (3, 3, 16, 16) in about [-1, 1]
        images = official_datasets.ImageNet256Features.unpreprocess(None, decoded.clone())  # [0, 1]

    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.official, capture_output=True,
                                           text=True).stdout.strip()
    compact = dict(separators=(",", ":"), sort_keys=True)
    meta = {"official": "baofff/U-ViT", "commit": commit, "ddconfig": json.dumps(DDCONFIG),
            "embed_dim": str(EMBED_DIM), "scale_factor": repr(SCALE_FACTOR), "seed": str(SEED),
            "weights_sum": repr(weights_sum(state)), "layout": json.dumps(layout, **compact),
            "released_ddconfig": json.dumps(released),
            "released_layout": json.dumps(official_layout(official, released, released_embed_dim), **compact),
            "generator": "tools/golden/make_uvit_autoencoder.py"}
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({"latents": latents, "decoded": decoded.contiguous(), "images": images.contiguous()},
              str(args.out / "autoencoder.io.safetensors"), metadata=meta)
    print(f"wrote {args.out / 'autoencoder.io.safetensors'}: {len(layout)} keys, |decoded| mean "
          f"{decoded.abs().mean().item():.3f}, images in [{images.min().item():.3f}, {images.max().item():.3f}], "
          f"clamped fraction {((images == 0) | (images == 1)).float().mean().item():.3f}")


if __name__ == "__main__":
    main()
