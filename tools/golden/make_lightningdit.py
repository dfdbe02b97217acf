"""Write the LightningDiT golden fixture from the official code (hustvl/LightningDiT).

Builds a tiny official ``LightningDiT`` with the released model's options (RMSNorm, SwiGLU, RoPE, patch 1,
no learned sigma; plus a second tiny one with the other options: qk-norm, no shift, LayerNorm, GELU MLP,
no RoPE), re-draws every parameter at random (the official init zeroes AdaLN and the output layer), and
saves into ``tests/fixtures/lightningdit/``:

- ``<name>.weights.safetensors``: the official state dict (official key names), metadata: config, commit;
- ``xl1_state_dict_layout.json``: key -> shape of the full released XL/1 model (built on the meta device);
- ``vavae.io.safetensors``: a tiny official VA-VAE (LDM) decoder's output on denormalised latents, with the
  seed and layout of its random weights (see ``make_vae``);
- ``<name>.io.safetensors``: inputs x, t, y and the official c (t_embedder(t) + y_embedder(y)), forward
  output, and ``forward_with_cfg`` outputs (scale 4, interval start 0.125) at t = 0.5 and t = 0.1.

Usage: ``python tools/golden/make_lightningdit.py --official /work/ref/LightningDiT [--commit SHA]``
"""
from __future__ import annotations

import argparse
import json
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file
from seeded_weights import seeded_state, weights_sum  # tools/golden/, beside this script

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "lightningdit"

# name -> official constructor arguments (tiny sizes, the options of the released model or the others)
CONFIGS = {
    "released": dict(input_size=4, patch_size=1, in_channels=8, hidden_size=32, depth=2, num_heads=4, mlp_ratio=2.0,
                     num_classes=10, class_dropout_prob=0.1, learn_sigma=False, use_qknorm=False,
                     use_swiglu=True, use_rope=True, use_rmsnorm=True, wo_shift=False),
    "variant": dict(input_size=4, patch_size=2, in_channels=4, hidden_size=16, depth=2, num_heads=2,
                    num_classes=10, class_dropout_prob=0.1, learn_sigma=True, use_qknorm=True,
                    use_swiglu=False, use_rope=False, use_rmsnorm=False, wo_shift=True),
}


def stub_fairscale() -> None:
    """The official ``models/rmsnorm.py`` imports fairscale for LLaMA layers that LightningDiT never uses."""
    names = ["fairscale", "fairscale.nn", "fairscale.nn.model_parallel", "fairscale.nn.model_parallel.initialize",
             "fairscale.nn.model_parallel.layers"]
    for name in names:
        sys.modules.setdefault(name, types.ModuleType(name))
    layers = sys.modules["fairscale.nn.model_parallel.layers"]
    for attr in ("ColumnParallelLinear", "ParallelEmbedding", "RowParallelLinear"):
        setattr(layers, attr, None)


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter except the fixed position table: norms' weights near 1, the rest N(0, 0.1)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "pos_embed":
                continue
            noise = torch.randn(p.shape, generator=gen)
            p.copy_(1 + 0.1 * noise if "norm" in name else 0.1 * noise)


def make(name: str, args: dict, commit: str, LightningDiT) -> None:
    torch.manual_seed(0)
    model = LightningDiT(**args).eval()
    randomise(model, seed=1)
    gen = torch.Generator().manual_seed(2)
    n = 4
    x = torch.randn(n, args["in_channels"], args["input_size"], args["input_size"], generator=gen)
    t = torch.tensor([0.0, 0.3, 0.7, 1.0])
    y = torch.tensor([0, 3, 7, args["num_classes"]])  # the last is the null class
    with torch.no_grad():
        c = model.t_embedder(t) + model.y_embedder(y, False)
        out = model(x, t, y)
        x_cfg = torch.cat([x[:2], x[:2]])
        y_cfg = torch.tensor([3, 7, args["num_classes"], args["num_classes"]])
        cfg = {f"cfg_out_t{tag}": model.forward_with_cfg(x_cfg, torch.full((n,), tv), y_cfg, cfg_scale=4.0,
                                                          cfg_interval=True, cfg_interval_start=0.125)
               for tag, tv in (("050", 0.5), ("010", 0.1))}
    meta = {"repo": "hustvl/LightningDiT", "commit": commit, "config": json.dumps(args), "cfg_scale": "4.0",
            "cfg_interval_start": "0.125", "generator": "tools/golden/make_lightningdit.py"}
    OUT.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(OUT / f"{name}.weights.safetensors"), metadata=meta)
    io = {"x": x, "t": t, "y": y, "c": c, "out": out, "x_cfg": x_cfg, "y_cfg": y_cfg, **cfg}
    save_file({k: v.contiguous() for k, v in io.items()}, str(OUT / f"{name}.io.safetensors"), metadata=meta)
    print(name, "keys:", len(state), "out", tuple(out.shape), "|out| mean", out.abs().mean().item())


def write_xl1_layout(commit: str, LightningDiT) -> None:
    """Key -> shape of the full released XL/1 model, built on the meta device as ``inference.py`` builds it."""
    with torch.device("meta"):
        model = LightningDiT(input_size=16, patch_size=1, in_channels=32, hidden_size=1152, depth=28, num_heads=16,
                             num_classes=1000, use_qknorm=False, use_swiglu=True, use_rope=True, use_rmsnorm=True,
                             wo_shift=False, learn_sigma=False)
    layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    record = {"repo": "hustvl/LightningDiT", "commit": commit, "model": "LightningDiT-XL/1 (ImageNet 256)",
              "keys": layout}
    (OUT / "xl1_state_dict_layout.json").write_text(json.dumps(record, separators=(",", ":"), sort_keys=True))
    print("XL/1 keys:", len(layout), "params:", sum(v.numel() for v in model.parameters()))


# A tiny VA-VAE decoder (LDM layout): two levels, channel change (nin_shortcut), attention at the lowest level.
VAE_CONFIG = dict(z_channels=4, ch=32, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8], resolution=16, out_ch=3)
VAE_SEED = 5


def make_vae(commit: str, official: Path) -> None:
    """The official LDM ``Decoder`` + ``post_quant_conv`` (as ``AutoencoderKL.decode`` chains them) on
    denormalised latents. The weights are not stored (about 0.6 MB): the fixture holds the key -> shape
    layout, the seed and the weights' sum, and the test redraws them with ``seeded_state``."""
    from tokenizer.autoencoder import Decoder  # the official module

    cfg = VAE_CONFIG
    torch.manual_seed(0)
    decoder = Decoder(ch=cfg["ch"], out_ch=cfg["out_ch"], ch_mult=tuple(cfg["ch_mult"]),
                      num_res_blocks=cfg["num_res_blocks"], attn_resolutions=tuple(cfg["attn_resolutions"]),
                      resolution=cfg["resolution"], z_channels=cfg["z_channels"]).eval()
    post_quant_conv = torch.nn.Conv2d(cfg["z_channels"], cfg["z_channels"], 1)
    layout = {f"decoder.{k}": list(v.shape) for k, v in decoder.state_dict().items()}
    layout.update({f"post_quant_conv.{k}": list(v.shape) for k, v in post_quant_conv.state_dict().items()})
    state = seeded_state(layout, VAE_SEED)
    decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")})
    post_quant_conv.load_state_dict({k[len("post_quant_conv."):]: v for k, v in state.items()
                                     if k.startswith("post_quant_conv.")})
    gen = torch.Generator().manual_seed(6)
    side = cfg["resolution"] // 2 ** (len(cfg["ch_mult"]) - 1)
    latents = torch.randn(2, cfg["z_channels"], side, side, generator=gen)  # what LightningDiT samples
    mean = 0.5 * torch.randn(1, cfg["z_channels"], 1, 1, generator=gen)
    std = 0.5 + torch.rand(1, cfg["z_channels"], 1, 1, generator=gen)
    with torch.no_grad():
        z = (latents * std) / 1.0 + mean  # inference.py, latent_multiplier 1.0
        images = decoder(post_quant_conv(z))  # VA_VAE.decode_to_images before its uint8 mapping
    meta = {"repo": "hustvl/LightningDiT", "commit": commit, "config": json.dumps(cfg), "seed": str(VAE_SEED),
            "weights_sum": repr(weights_sum(state)),
            "layout": json.dumps(layout, separators=(",", ":"), sort_keys=True),
            "generator": "tools/golden/make_lightningdit.py"}
    save_file({"latents": latents, "mean": mean, "std": std, "images": images.contiguous()},
              str(OUT / "vavae.io.safetensors"), metadata=meta)
    print("vavae keys:", len(layout), "images", tuple(images.shape), "|images| mean", images.abs().mean().item())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of github.com/hustvl/LightningDiT")
    parser.add_argument("--commit", default="2725fed42a14898744433809949834e26957bcdd")
    opts = parser.parse_args()
    torch._dynamo.config.disable = True  # the official modules wrap forwards in torch.compile; run them eagerly
    stub_fairscale()
    sys.path.insert(0, str(Path(opts.official).resolve()))
    from models.lightningdit import LightningDiT  # the official module

    for name, args in CONFIGS.items():
        make(name, args, opts.commit, LightningDiT)
    write_xl1_layout(opts.commit, LightningDiT)
    make_vae(opts.commit, Path(opts.official))


if __name__ == "__main__":
    main()
