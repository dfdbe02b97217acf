"""Golden fixtures for X-MDPT: the official trungpx/xmdpt code run on a tiny random model.

Usage: PYTHONPATH=src python tools/golden/make_xmdpt.py --official /path/to/xmdpt [--out tests/fixtures/xmdpt]

The official ``masked_diffusion/models.py`` imports timm (``PatchEmbed``, ``Mlp``, ``trunc_normal_``) and
einops; install both (``pip install timm einops``) to run this script. Nothing of the official code is stubbed.

Writes ``weights.safetensors`` (the official state dict of a tiny X-MDPT, every parameter re-drawn at random,
training-only ``sideblocks``/``sideblocks_cross``/``mask_token`` included), ``golden.safetensors`` (the noisy
inputs, fingerprints of the condition inputs (PairedNoise draws the test rebuilds), the official c of both
guidance branches, network outputs, ``forward_with_cfg`` outputs, and the final latents of the official guided
``ddim_sample_loop`` on the 10-step respacing, started from condbench's paired noise) and ``sizes_keys.json``
(the official S/2, B/2, L/2 state-dict keys and shapes, built on the meta device). The metadata records the official
commit, the timesteps of the official ``create_diffusion("50")`` respacing, and the FLOPs of one official
forward (counted with ``torch.utils.flop_counter.FlopCounterMode``) so the test can show what skipping the
source stream saves.
"""
from __future__ import annotations

import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from condbench.checkpoints import save_safetensors
from condbench.seeding import PairedNoise
from official import official_checkout  # tools/golden/, beside this script

# The condition heads fix 256 latent tokens (conv1d_local) and the DINOv2 widths, so only D and depth shrink.
TINY = dict(input_size=32, patch_size=2, in_channels=4, hidden_size=16, depth=4, num_heads=2, mlp_ratio=4.0,
            learn_sigma=True, decode_layer=2)
CFG_SCALE, SCALE_POW, DIFFUSION_STEPS = 2.0, 0.01, 1000
SAMPLER_STEPS, NOISE_SEED, NUM_SAMPLES = 10, 0, 2
COND_SEED, SAMPLE_COND_SEED = 3, 4
GUIDED_STEPS = (0, 1, 9)  # sampling steps whose single guided output is stored besides the final latents


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Re-draw every parameter (the official init zeroes adaLN and the output layer, hiding c)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            std = 0.5 if "relative_position_bias_table" in name else 0.15
            p.copy_(torch.randn(p.shape, generator=generator) * std)


def condition(seed: int, n: int) -> dict:
    """Random stand-ins for the DINOv2 pose / source features and the source latent of n pairs, drawn from
    condbench's PairedNoise so the test regenerates them (the fixture stores only their fingerprints)."""
    noise = PairedNoise(seed, range(n))
    return {"dino_tgt_pose": noise.draw((257, 768)), "dino_src_img": noise.draw((257, 1536)),
            "src_img": noise.draw((4, 32, 32))}


def fingerprint(cond: dict) -> dict:
    """Per-tensor sums and a corner of each, to prove the test rebuilt the very inputs used here."""
    return {f"{key}_{name}": value for key, tensor in cond.items()
            for name, value in (("sum", tensor.double().sum()), ("corner", tensor[:, :2, :3].reshape(-1)))}


def captured_c(model, x: torch.Tensor, t: torch.Tensor, cond: dict, prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The c the official network feeds its first block's adaLN (the SiLU's input), and its output."""
    seen = {}
    handle = model.blocks[0].adaLN_modulation.register_forward_pre_hook(lambda m, args: seen.update(c=args[0]))
    out = model(x, t, False, cond["dino_tgt_pose"], cond["dino_src_img"], cond["src_img"], prob)
    handle.remove()
    return seen["c"], out


def main() -> None:
    args, commit = official_checkout(__doc__, "github.com/trungpx/xmdpt", "tests/fixtures/xmdpt")
    sys.path.insert(0, str(args.official))
    from masked_diffusion import create_diffusion
    from masked_diffusion.models import XMDPT, XMDPT_B_2, XMDPT_L_2, XMDPT_S_2

    torch.manual_seed(0)
    model = XMDPT(**TINY).eval()
    randomize(model, seed=1)
    torch.set_grad_enabled(False)

    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 4, 32, 32, generator=gen)
    t = torch.tensor([0, 500, 999])
    cond = condition(COND_SEED, len(x))
    golden = {"x": x, "t": t, **{f"cond_{k}": v for k, v in fingerprint(cond).items()}}
    golden["c_cond"], golden["out_cond"] = captured_c(model, x, t, cond, prob=0)  # cond_mask all ones
    golden["c_uncond"], golden["out_uncond"] = captured_c(model, x, t, cond, prob=1)  # null condition

    with FlopCounterMode(display=False) as counter:
        model(x, t, False, cond["dino_tgt_pose"], cond["dino_src_img"], cond["src_img"], 0)
    official_flops = counter.get_total_flops()

    diffusion = create_diffusion(str(SAMPLER_STEPS))
    sample_cond = condition(SAMPLE_COND_SEED, NUM_SAMPLES)
    golden.update({f"sample_{k}": v for k, v in fingerprint(sample_cond).items()})
    kwargs = dict(cfg_scale=CFG_SCALE, scale_pow=SCALE_POW, diffusion_steps=DIFFUSION_STEPS, **sample_cond)
    for step in GUIDED_STEPS:
        tk = torch.full((NUM_SAMPLES,), diffusion.timestep_map[SAMPLER_STEPS - 1 - step])
        xk = torch.randn(NUM_SAMPLES, 4, 32, 32, generator=gen)
        golden[f"guided_x_{step}"], golden[f"guided_out_{step}"] = xk, model.forward_with_cfg(xk, tk, **kwargs)
    z = PairedNoise(NOISE_SEED, range(NUM_SAMPLES)).draw((4, 32, 32))
    golden["samples"] = diffusion.ddim_sample_loop(model.forward_with_cfg, tuple(z.shape), z, clip_denoised=False,
                                                   model_kwargs=kwargs, progress=False, device="cpu")

    meta = {"repo": "github.com/trungpx/xmdpt", "commit": commit, "config": TINY, "cfg_scale": CFG_SCALE,
            "scale_pow": SCALE_POW, "diffusion_steps": DIFFUSION_STEPS, "sampler_steps": SAMPLER_STEPS,
            "noise_seed": NOISE_SEED, "cond_seed": COND_SEED, "sample_cond_seed": SAMPLE_COND_SEED,
            "num_samples": NUM_SAMPLES, "guided_steps": list(GUIDED_STEPS), "official_forward_flops": official_flops,
            "official_forward_batch": len(x),
            "ddim50_timestep_map": [int(v) for v in create_diffusion("50").timestep_map],
            "command": "PYTHONPATH=src python tools/golden/make_xmdpt.py --official <xmdpt checkout>"}
    save_safetensors(model.state_dict(), args.out / "weights.safetensors", meta)
    save_safetensors(golden, args.out / "golden.safetensors", meta)

    sizes = {}
    for size, build in (("S", XMDPT_S_2), ("B", XMDPT_B_2), ("L", XMDPT_L_2)):
        with torch.device("meta"):
            net = build(input_size=32, decode_layer=2)  # as infer_xmdpt.py builds them
        sizes[size] = {k: list(v.shape) for k, v in net.state_dict().items()}
    (args.out / "sizes_keys.json").write_text(json.dumps({"commit": commit, "keys": sizes}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
