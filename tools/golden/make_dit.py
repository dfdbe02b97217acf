"""Golden fixture for DiT: the official model and sampler (facebookresearch/DiT) on a tiny random network.

Usage: python tools/golden/make_dit.py --official PATH/TO/DiT [--commit SHA] [--out tests/fixtures/dit]

Imports the official ``models.DiT`` and ``diffusion.create_diffusion`` from the checkout at --official,
re-draws every weight (adaLN-Zero would make outputs trivial), and saves: the weights in the official
key layout, c and the raw network output for a few (t, y), and the final latents of the official
``p_sample_loop`` with ``forward_with_cfg`` (10 respaced steps, CFG 1.5), fed with condbench's per-sample
noise (``PairedNoise``) so that both samplers see the same noise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4, num_classes=10,
            learn_sigma=True, class_dropout_prob=0.1)
SEED, STEPS, CFG = 7, 10, 1.5
LABELS = [3, 0, 9, 5]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--official", required=True, type=Path)
    parser.add_argument("--commit", help="the official commit (default: git rev-parse HEAD in --official)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "dit")
    args = parser.parse_args()
    sys.path.insert(0, str(args.official))
    from diffusion import create_diffusion  # the official code
    from models import DiT

    from condbench.seeding import PairedNoise

    torch.manual_seed(0)
    model = DiT(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.15)
    y = torch.tensor(LABELS + [10])  # the last row is the null class
    t = torch.tensor([999, 500, 17, 0, 250])
    x = torch.randn(len(y), 4, 8, 8)
    with torch.no_grad():
        c = model.t_embedder(t) + model.y_embedder(y, train=False)
        out = model(x, t, y)

        # the official loop keeps [cond; uncond] as a batch of 2N and draws randn_like(x) of 2N rows per step;
        # the first N rows (the kept samples) get condbench's per-sample noise
        n = len(LABELS)
        noise = PairedNoise(SEED, range(n))
        z = noise.draw((4, 8, 8))
        original_randn_like = torch.randn_like
        torch.randn_like = lambda ref, **kw: torch.cat([noise.draw((4, 8, 8)), original_randn_like(ref[n:], **kw)])
        try:
            diffusion = create_diffusion(str(STEPS))
            labels = torch.tensor(LABELS + [10] * n)
            final = diffusion.p_sample_loop(model.forward_with_cfg, (2 * n, 4, 8, 8), torch.cat([z, z]),
                                            clip_denoised=False, model_kwargs=dict(y=labels, cfg_scale=CFG),
                                            device="cpu")[:n]
        finally:
            torch.randn_like = original_randn_like
    commit = args.commit or subprocess.run(["git", "rev-parse", "HEAD"], cwd=args.official, capture_output=True,
                                           text=True).stdout.strip()
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"official": "facebookresearch/DiT", "commit": commit, "config": TINY,
            "seed": SEED, "steps": STEPS, "cfg_scale": CFG, "labels": LABELS}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out / "weights.safetensors"),
              metadata={"meta": json.dumps(meta)})
    save_file({"x": x, "t": t, "y": y, "c": c, "out": out, "final": final.contiguous()},
              str(args.out / "outputs.safetensors"), metadata={"meta": json.dumps(meta)})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
