"""Golden fixtures for MDTv2: the official sail-sg/MDT code run on a tiny random model.

Usage: python tools/golden/make_mdt.py --official /work/ref/MDT [--out tests/fixtures/mdt]

Writes ``weights.safetensors`` (the official state dict of a tiny MDTv2, every parameter re-drawn at
random, training-only ``sideblocks``/``mask_token`` included), ``golden.safetensors`` (inputs and the
official c, network outputs, guided outputs at every sampling step, and the final latents
of the official DDPM loop fed condbench's paired noise) and ``xl2_keys.json`` (the official MDTv2-XL/2
state-dict keys and shapes, built on the meta device).
"""
from __future__ import annotations

import json
import sys

import torch

from condbench.checkpoints import save_safetensors
from condbench.seeding import PairedNoise
from official import official_checkout  # tools/golden/, beside this script

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=16, depth=6, num_heads=4, mlp_ratio=4.0,
            class_dropout_prob=0.1, num_classes=10, learn_sigma=True, decode_layer=2)
CFG_SCALE, SCALE_POW, DIFFUSION_STEPS = 3.8, 4.0, 1000
SAMPLER_STEPS, NOISE_SEED, SAMPLE_LABELS = 10, 0, [3, 7]


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter (the official init zeroes adaLN and the output layer, hiding c)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.5 if "relative_position_bias_table" in name else 0.15
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def captured_c(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The c the official network feeds its first block's adaLN (the SiLU's input), and its output."""
    seen = {}
    handle = model.en_inblocks[0].adaLN_modulation.register_forward_pre_hook(lambda m, args: seen.update(c=args[0]))
    out = model(x, t, y)
    handle.remove()
    return seen["c"], out


def official_sample(model, create_diffusion, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The official guided DDPM loop, its initial and per-step noise taken from condbench's PairedNoise."""
    n, shape = len(labels), (TINY["in_channels"], TINY["input_size"], TINY["input_size"])
    noise = PairedNoise(NOISE_SEED, range(n))
    z = noise.draw(shape)
    original = torch.randn_like

    def paired_randn_like(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        assert x.shape == (2 * n, *shape), x.shape  # only the sampler's per-step noise may come here
        return torch.cat([noise.draw(shape), torch.zeros(n, *shape)])  # the null half is discarded

    torch.randn_like = paired_randn_like
    try:
        diffusion = create_diffusion(str(SAMPLER_STEPS))
        kwargs = dict(y=torch.cat([labels, torch.full_like(labels, num_classes)]), cfg_scale=CFG_SCALE,
                      diffusion_steps=DIFFUSION_STEPS, scale_pow=SCALE_POW)
        out = diffusion.p_sample_loop(model.forward_with_cfg, (2 * n, *shape), torch.cat([z, z]),
                                      clip_denoised=False, model_kwargs=kwargs, progress=False, device="cpu")
    finally:
        torch.randn_like = original
    return out[:n]


def main() -> None:
    args, commit = official_checkout(__doc__, "github.com/sail-sg/MDT", "tests/fixtures/mdt")
    sys.path.insert(0, str(args.official))
    from masked_diffusion import create_diffusion
    from masked_diffusion.models import MDTv2, MDTv2_XL_2

    torch.manual_seed(0)
    model = MDTv2(**TINY).eval()
    randomize(model, seed=1)
    torch.set_grad_enabled(False)

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(4, 4, 8, 8, generator=gen)
    t = torch.tensor([0, 111, 500, 999])
    y = torch.tensor([0, 5, 9, 10])  # 10 is the null class
    c, out = captured_c(model, x, t, y)

    diffusion = create_diffusion(str(SAMPLER_STEPS))
    golden = {"x": x, "t": t, "y": y, "c": c, "out": out}
    guided_y = torch.tensor([2, 8])
    golden["guided_y"] = guided_y
    for step in range(SAMPLER_STEPS):  # every step, so the whole guidance schedule is checked
        tk = torch.full((4,), diffusion.timestep_map[SAMPLER_STEPS - 1 - step])
        xk = torch.randn(2, 4, 8, 8, generator=gen)
        both = torch.cat([guided_y, torch.full_like(guided_y, TINY["num_classes"])])
        guided = model.forward_with_cfg(torch.cat([xk, xk]), tk, both, cfg_scale=CFG_SCALE,
                                        diffusion_steps=DIFFUSION_STEPS, scale_pow=SCALE_POW)
        golden[f"guided_x_{step}"], golden[f"guided_out_{step}"] = xk, guided[:2]
    golden["samples"] = official_sample(model, create_diffusion, torch.tensor(SAMPLE_LABELS), TINY["num_classes"])

    meta = {"repo": "github.com/sail-sg/MDT", "commit": commit, "config": TINY, "cfg_scale": CFG_SCALE,
            "scale_pow": SCALE_POW, "diffusion_steps": DIFFUSION_STEPS, "sampler_steps": SAMPLER_STEPS,
            "noise_seed": NOISE_SEED, "sample_labels": SAMPLE_LABELS,
            "command": "python tools/golden/make_mdt.py --official <MDT checkout>"}
    save_safetensors(model.state_dict(), args.out / "weights.safetensors", meta)
    save_safetensors(golden, args.out / "golden.safetensors", meta)

    with torch.device("meta"):
        xl = MDTv2_XL_2(input_size=32, decode_layer=4)
    keys = {k: list(v.shape) for k, v in xl.state_dict().items()}
    (args.out / "xl2_keys.json").write_text(json.dumps({"commit": commit, "keys": keys}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
